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
