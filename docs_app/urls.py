from django.urls import path

from docs_app import views

urlpatterns = [
    path("models/<str:name>/card/", views.model_card_page, name="model-card"),
    path("docs/", views.page_list, name="page-list"),
    path("docs/new/", views.page_create, name="page-create"),
    path("docs/preview/", views.page_preview, name="page-preview"),
    path("docs/attachments/<int:pk>/<str:name>", views.attachment, name="attachment"),
    path("docs/postmortem/<int:incident_id>/", views.postmortem, name="postmortem-create"),
    path("docs/<slug:slug>/", views.page_detail, name="page-detail"),
    path("docs/<slug:slug>/edit/", views.page_edit, name="page-edit"),
    path("docs/<slug:slug>/history/", views.page_history, name="page-history"),
    path("docs/<slug:slug>/diff/", views.page_diff, name="page-diff"),
    path("docs/<slug:slug>/print/", views.page_print, name="page-print"),
    path("docs/<slug:slug>/restore/<int:number>/", views.page_restore, name="page-restore"),
    path("docs/<slug:slug>/attach/", views.attachment_upload, name="page-attach"),
]
