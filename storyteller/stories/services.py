from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from generation.params import ParamError, clean_params
from storyteller.stories.models import Revision, Story

EXPORT_FORMAT = "storyteller.story"
EXPORT_VERSION = 1
DEFAULT_TITLE = "Untitled story"


class StaleRevision(Exception):
    """A save based on an old revision: nothing was written; `story` is how it is now."""

    def __init__(self, story: Story):
        super().__init__(f"The story is at revision {story.revision}.")
        self.story = story


def _check_text(text: str) -> None:
    limit = settings.STORYTELLER_MAX_STORY_CHARS
    if len(text) > limit:
        raise ValidationError({"text": f"The story is longer than {limit:,} characters."})


@transaction.atomic
def story_create(*, owner, title: str, text: str, story_settings: dict | None = None) -> Story:
    _check_text(text)
    story = Story(owner=owner, title=title.strip() or DEFAULT_TITLE, text=text, settings=story_settings or {})
    story.full_clean()
    story.save()
    Revision.objects.create(story=story, number=story.revision, title=story.title, text=story.text)
    return story


@transaction.atomic
def draft_save(*, story: Story, text: str, base_revision: int, title: str | None = None) -> Story:
    """Saves the writer's text if `base_revision` is the latest, else raises StaleRevision.

    The compare-and-set is one conditional UPDATE, so two saves racing from the same
    revision cannot both win, on SQLite or on PostgreSQL.
    """
    _check_text(text)
    new_title = story.title if title is None else (title.strip() or DEFAULT_TITLE)
    candidate = Story(owner_id=story.owner_id, title=new_title, text=text, settings=story.settings)
    candidate.full_clean(exclude=["owner"])

    current = Story.objects.get(pk=story.pk)
    if current.revision != base_revision:
        raise StaleRevision(current)
    if current.text == text and current.title == new_title:
        return current

    updated = Story.objects.filter(pk=story.pk, revision=base_revision).update(
        text=text, title=new_title, revision=base_revision + 1, updated_at=timezone.now()
    )
    if not updated:
        raise StaleRevision(Story.objects.get(pk=story.pk))
    story.refresh_from_db()
    Revision.objects.create(story=story, number=story.revision, title=story.title, text=story.text)
    return story


def story_export(story: Story) -> dict:
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "title": story.title,
        "text": story.text,
        "settings": story.settings,
        "exported_at": timezone.now().isoformat(),
    }


def story_import(*, owner, data: dict) -> Story:
    """Creates a story from a `json` export; a foreign or newer file gets a ValidationError."""
    if data.get("format") != EXPORT_FORMAT:
        raise ValidationError({"format": f'This is not a Storyteller export (format must be "{EXPORT_FORMAT}").'})
    if data.get("version") != EXPORT_VERSION:
        raise ValidationError({"version": f"Only version {EXPORT_VERSION} exports can be imported."})
    for field, kind in (("title", str), ("text", str), ("settings", dict)):
        if field in data and not isinstance(data[field], kind):
            raise ValidationError({field: f"{field} must be a {kind.__name__ if kind is not dict else 'object'}."})
    try:
        story_settings = clean_params(data.get("settings", {}))
    except ParamError as exc:
        raise ValidationError({exc.field: str(exc)}) from None
    return story_create(
        owner=owner, title=data.get("title", ""), text=data.get("text", ""), story_settings=story_settings
    )
