from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from generation.selectors import model_config_active
from storyteller.stories import selectors, services
from storyteller.stories.forms import StoryForm


@login_required
@require_http_methods(["GET", "POST"])
def library(request):
    form = StoryForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            story = services.story_create(owner=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect("stories:editor", story_id=story.id)
    stories = selectors.story_list_for(request.user)
    return render(request, "stories/library.html", {"stories": stories, "form": form})


@login_required
def editor(request, story_id):
    story = selectors.story_get_for(request.user, story_id)
    defaults = {**model_config_active().default_params(), **story.settings}
    context = {
        "defaults": defaults,
        "story": story,
        "story_json": selectors.story_as_dict(story),
        "max_text_chars": settings.STORYTELLER_MAX_TEXT_CHARS,
    }
    return render(request, "stories/editor.html", context)
