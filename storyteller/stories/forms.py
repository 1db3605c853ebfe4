import json

from django import forms

from storyteller.stories.models import TITLE_MAX_LENGTH


class StoryForm(forms.Form):
    title = forms.CharField(max_length=TITLE_MAX_LENGTH, required=False, label="Title")
    text = forms.CharField(
        required=False,
        label="Opening",
        widget=forms.Textarea(attrs={"rows": 6, "placeholder": "Once upon a time..."}),
        strip=False,
    )


class ImportForm(forms.Form):
    """A Storyteller .json export, uploaded from the library."""

    MAX_BYTES = 5 * 1024 * 1024

    file = forms.FileField(label="Storyteller file (.json)")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > self.MAX_BYTES:
            raise forms.ValidationError("The file is larger than 5 MB.")
        try:
            data = json.loads(upload.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise forms.ValidationError("The file is not a Storyteller .json export.") from None
        if not isinstance(data, dict):
            raise forms.ValidationError("The file is not a Storyteller .json export.")
        self.cleaned_data["data"] = data
        return upload
