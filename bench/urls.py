"""The portal's URLs plus a floor view, served only by the benchmark (ROOT_URLCONF=bench.urls).

The floor is the cheapest request Django answers through the full middleware stack, so the
benchmark can tell the framework's fixed cost per request from each endpoint's own work."""

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.urls import path

from mlops_portal import urls as portal


@login_not_required
def floor(request):
    return JsonResponse({"ok": True})


handler404 = portal.handler404
handler500 = portal.handler500
# Last, so resolving it walks the same patterns an API path does.
urlpatterns = [*portal.urlpatterns, path("bench/floor/", floor, name="bench-floor")]
