from django import forms


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What uses it, e.g. 'training-pipeline' or 'laptop CLI'.",
    )
