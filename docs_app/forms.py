from django import forms

from deployments.forms import TagsField
from deployments.models import RegisteredModel, Target
from docs_app.models import Page

LINKS_HELP = "Ctrl-click (⌘-click on a Mac) to link several, or to unlink one."


class PageForm(forms.Form):
    title = forms.CharField(max_length=200)
    slug = forms.SlugField(
        max_length=120, required=False, help_text="Left empty, it is made from the title."
    )
    body = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 18, "class": "font-monospace"}),
        help_text="Markdown: tables, ```code```, ```mermaid diagrams```, [[page-slug]] links, "
        "model:name@3 references.",
    )
    tags = TagsField(required=False, help_text="Comma-separated.")
    parent = forms.ModelChoiceField(queryset=Page.objects.order_by("title"), required=False)
    linked_models = forms.ModelMultipleChoiceField(
        queryset=RegisteredModel.objects.order_by("name"),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text=LINKS_HELP,
    )
    linked_targets = forms.ModelMultipleChoiceField(
        queryset=Target.objects.order_by("name"),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text=LINKS_HELP,
    )
    summary = forms.CharField(max_length=300, required=False, label="Summary of this change")
    base_revision = forms.IntegerField(required=False, widget=forms.HiddenInput)


class AttachmentForm(forms.Form):
    file = forms.FileField()
