from datetime import timedelta

from django.db.models import QuerySet
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from storyteller.stories.models import TRASH_DAYS, LoreEntry, Revision, Story, TreeNode


def story_list_for(user, *, query: str = "") -> QuerySet[Story]:
    """The user's stories outside the trash, newest change first; `query` searches titles."""
    stories = Story.objects.filter(owner=user, deleted_at__isnull=True)
    if query.strip():
        stories = stories.filter(title__icontains=query.strip())
    return stories.order_by("-updated_at")


def story_trash_for(user) -> QuerySet[Story]:
    """The user's stories in the trash that can still be restored (TRASH_DAYS), whether or
    not the workers' housekeeping has deleted the older ones yet."""
    return Story.objects.filter(owner=user, deleted_at__gte=trash_since()).order_by("-deleted_at")


def story_in_trash(user, story_id) -> Story | None:
    """The user's story `story_id` if it is in the trash and can still be restored."""
    return story_trash_for(user).filter(pk=story_id).first() if story_id is not None else None


def trash_since():
    """When a story must have gone to the trash to be in it still."""
    return timezone.now() - timedelta(days=TRASH_DAYS)


def story_get_for(user, story_id, *, trashed: bool = False) -> Story:
    """The user's story, or Http404 for anyone else's: its existence is not revealed.
    A story in the trash is found only with trashed=True."""
    place = {"deleted_at__gte": trash_since()} if trashed else {"deleted_at__isnull": True}
    try:
        return Story.objects.get(pk=int(story_id), owner=user, **place)
    except (Story.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such story.") from None


def story_shared(token: str) -> Story:
    """The story behind a share link, or Http404 for a revoked or unknown one."""
    if not token:
        raise Http404("No such story.")
    try:
        return Story.objects.get(share_token=token, deleted_at__isnull=True)
    except Story.DoesNotExist:
        raise Http404("No such story.") from None


def lore_get_for(story: Story, entry_id) -> LoreEntry:
    try:
        return story.lore.get(pk=int(entry_id))
    except (LoreEntry.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such lore entry.") from None


def revision_list(story: Story) -> QuerySet[Revision]:
    return story.revisions.order_by("-number")


def revision_get(story: Story, number) -> Revision:
    try:
        return story.revisions.get(number=int(number))
    except (Revision.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such revision.") from None


def tree_node_get(story: Story, node_id) -> TreeNode:
    try:
        return story.tree.get(pk=int(node_id))
    except (TreeNode.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such node.") from None


def tree_path_ids(story: Story) -> list[int]:
    """The ids from the tree's start to the story's current try, both included: two queries,
    the tree's links and the current try as saved now (not as `story` was read)."""
    parents = dict(story.tree.values_list("id", "parent_id"))
    path, at = [], Story.objects.filter(pk=story.pk).values_list("tree_node_id", flat=True).first()
    while at is not None and at in parents:
        path.append(at)
        at = parents[at]
    return path[::-1]


def tree_node_as_dict(node: TreeNode, *, with_text: bool = False) -> dict:
    data = {
        "id": node.id,
        "parent": node.parent_id,
        "group": node.group,
        "kind": node.kind,
        "label": node.label,
        "start": node.start,
        "end": node.end,
        "words": node.words,
        "generation_id": node.generation_id,
        "created_at": node.created_at.isoformat(),
    }
    if with_text:
        data["text"] = node.text
        data["model_spans"] = node.model_spans
    return data


def tree_as_dict(story: Story) -> dict:
    """Every try of the story, oldest first, without their texts; and the current one."""
    nodes = story.tree.defer("text", "model_spans").order_by("id")
    return {"current": story.tree_node_id, "nodes": [tree_node_as_dict(node) for node in nodes]}


def share_path(story: Story) -> str | None:
    return reverse("shared", args=[story.share_token]) if story.share_token else None


def lore_as_dict(entry: LoreEntry) -> dict:
    return {
        "id": entry.id,
        "keys": entry.keys,
        "text": entry.text,
        "enabled": entry.enabled,
        "secondary_keys": entry.secondary_keys,
        "logic": entry.logic,
        "priority": entry.priority,
        "scan_chars": entry.scan_chars,
    }


def revision_as_dict(revision: Revision, *, with_text: bool = False) -> dict:
    data = {
        "number": revision.number,
        "title": revision.title,
        "created_at": revision.created_at.isoformat(),
        "chars": len(revision.text),
        "words": revision.word_count,
    }
    if with_text:
        data["text"] = revision.text
    return data


def story_as_dict(story: Story) -> dict:
    return {
        "id": story.id,
        "title": story.title,
        "text": story.text,
        "revision": story.revision,
        "updated_at": story.updated_at.isoformat(),
        "settings": story.settings,
        "preset": story.preset_id,
        "memory": story.memory,
        "note": story.note,
        "note_depth": story.note_depth,
        "lore": [lore_as_dict(entry) for entry in story.lore.all()],
        "share_url": share_path(story),
        "model_spans": story.model_spans,
        "words": story.word_count,
        "allow_training": story.allow_training,
    }


def story_summary(story: Story) -> dict:
    return {
        "id": story.id,
        "title": story.title,
        "updated_at": story.updated_at.isoformat(),
        "revision": story.revision,
        "words": story.word_count,
        "deleted_at": story.deleted_at.isoformat() if story.deleted_at else None,
    }
