from django.db.models import QuerySet
from django.http import Http404

from storyteller.stories.models import Story


def story_list_for(user) -> QuerySet[Story]:
    return Story.objects.filter(owner=user).order_by("-updated_at")


def story_get_for(user, story_id) -> Story:
    """The user's story, or Http404 for anyone else's: its existence is not revealed."""
    try:
        return Story.objects.get(pk=int(story_id), owner=user)
    except (Story.DoesNotExist, ValueError, TypeError):
        raise Http404("No such story.") from None


def story_as_dict(story: Story) -> dict:
    return {
        "id": story.id,
        "title": story.title,
        "text": story.text,
        "revision": story.revision,
        "updated_at": story.updated_at.isoformat(),
        "settings": story.settings,
    }


def story_summary(story: Story) -> dict:
    return {
        "id": story.id,
        "title": story.title,
        "updated_at": story.updated_at.isoformat(),
        "revision": story.revision,
    }
