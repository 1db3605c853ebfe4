from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from generation.selectors import (
    generation_unseen_for_story,
    model_config_active,
    params_defaults_for,
    preset_list,
    setting_limits,
    site_params_defaults,
)
from storyteller.stories import selectors, services
from storyteller.stories.forms import ImportForm, StoryForm
from storyteller.stories.models import TRASH_DAYS


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
    query = request.GET.get("q", "")
    # The story deleted a moment ago, offered back once (Undo).
    context = {
        "just_trashed": selectors.story_in_trash(request.user, request.session.pop("just_trashed", None)),
        "trash_days": TRASH_DAYS,
        "stories": selectors.story_list_for(request.user, query=query),
        "query": query,
        "form": form,
        "import_form": ImportForm(),
        "trash_count": selectors.story_trash_for(request.user).count(),
    }
    return render(request, "stories/library.html", context)


@login_required
@require_http_methods(["POST"])
def rename(request, story_id):
    story = selectors.story_get_for(request.user, story_id)
    try:
        services.draft_save(story=story, base_revision=story.revision, title=request.POST.get("title", ""))
    except (ValidationError, services.StaleRevision) as exc:
        messages.error(request, exc.messages[0] if isinstance(exc, ValidationError) else str(exc))
    return redirect("stories:library")


@login_required
@require_http_methods(["POST"])
def trash(request, story_id):
    story = services.story_trash(selectors.story_get_for(request.user, story_id))
    # The library says so, with Undo.
    request.session["just_trashed"] = story.id
    return redirect("stories:library")


@login_required
@require_http_methods(["GET"])
def trash_list(request):
    stories = selectors.story_trash_for(request.user)
    return render(request, "stories/trash.html", {"stories": stories, "days": TRASH_DAYS})


@login_required
@require_http_methods(["POST"])
def restore(request, story_id):
    story = services.story_untrash(selectors.story_get_for(request.user, story_id, trashed=True))
    messages.info(request, f"“{story.title}” is back in your library.")
    return redirect("stories:library")


@login_required
@require_http_methods(["POST"])
def import_story(request):
    form = ImportForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            story = services.story_import(owner=request.user, data=form.cleaned_data["data"])
        except ValidationError as exc:
            field, problems = next(iter(exc.message_dict.items()))
            messages.error(request, f"Not imported: {field}: {' '.join(problems)}")
        else:
            return redirect("stories:editor", story_id=story.id)
    else:
        messages.error(request, f"Not imported: {' '.join(form.errors.get('file', ['the file is not valid.']))}")
    return redirect("stories:library")


@login_required
def editor(request, story_id):
    story = selectors.story_get_for(request.user, story_id)
    config = model_config_active()
    context = {
        "defaults": {**params_defaults_for(story, config), **story.settings},
        "limits": setting_limits(config),
        "site_defaults": site_params_defaults(config),
        "presets": preset_list(),
        "story": story,
        "story_json": {**selectors.story_as_dict(story), "unseen_generation": generation_unseen_for_story(story)},
        "max_text_chars": settings.STORYTELLER_MAX_TEXT_CHARS,
    }
    return render(request, "stories/editor.html", context)


def shared(request, token):
    """The read-only page behind a share link: the story's current title and text."""
    story = selectors.story_shared(token)
    response = render(request, "stories/shared.html", {"story": story, "paragraphs": story.text.split("\n")})
    # The token is the key: keep it out of Referer headers and search engines.
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex"
    return response
