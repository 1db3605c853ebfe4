import bisect
import itertools
import secrets
from collections import Counter
from datetime import timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from generation import lore as lorebook
from generation.models import Preset
from generation.params import ParamError, clean_params
from storyteller.stories import selectors
from storyteller.stories.models import (
    LORE_KEYS_MAX_CHARS,
    LORE_MAX_ENTRIES,
    LORE_TEXT_MAX_CHARS,
    MEMORY_MAX_CHARS,
    NOTE_MAX_CHARS,
    NOTE_MAX_DEPTH,
    TITLE_MAX_LENGTH,
    TRASH_DAYS,
    TREE_KEY_MAX_CHARS,
    TREE_LABEL_MAX_CHARS,
    TREE_MAX_CHARS,
    TREE_MAX_NODES,
    LoreEntry,
    Revision,
    Story,
    TreeNode,
)
from storyteller.stories.text import utf16_length, utf16_slice
from storyteller.validators import Invalid, check_bool, check_dict, check_int, check_list, check_string, is_int

EXPORT_FORMAT = "storyteller.story"
EXPORT_VERSION = 1
DEFAULT_TITLE = "Untitled story"
# 192 random bits in the share link.
SHARE_TOKEN_BYTES = 24
# Revisions older than this are thinned to one a minute.
THIN_AFTER = timedelta(days=1)
THIN_EVERY = 50


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


_CONTEXT_LIMITS = {"memory": MEMORY_MAX_CHARS, "note": NOTE_MAX_CHARS}


def _check_changes(changes: dict) -> dict:
    """The story fields a save may change, checked; ValidationError names the first wrong one."""
    unknown = set(changes) - {
        "text",
        "title",
        "memory",
        "note",
        "note_depth",
        "settings",
        "preset",
        "model_spans",
        "allow_training",
    }
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "This field cannot be changed here."})
    cleaned = dict(changes)
    if "text" in cleaned:
        _check_text(cleaned["text"])
    if "title" in cleaned:
        cleaned["title"] = cleaned["title"].strip() or DEFAULT_TITLE
        if len(cleaned["title"]) > TITLE_MAX_LENGTH:
            raise ValidationError({"title": f"The title is longer than {TITLE_MAX_LENGTH} characters."})
    for field, limit in _CONTEXT_LIMITS.items():
        if field in cleaned and len(cleaned[field]) > limit:
            raise ValidationError({field: f"This is longer than {limit:,} characters."})
    if "note_depth" in cleaned and not 0 <= cleaned["note_depth"] <= NOTE_MAX_DEPTH:
        raise ValidationError({"note_depth": f"The note's depth is a number of paragraphs from 0 to {NOTE_MAX_DEPTH}."})
    if "preset" in cleaned:
        # None follows the site's defaults; otherwise the id of one of the admin's presets.
        preset = cleaned.pop("preset")
        if preset is not None and not Preset.objects.filter(pk=preset).exists():
            raise ValidationError({"preset": f"There is no preset {preset}."})
        cleaned["preset_id"] = preset
    if "settings" in cleaned:
        try:
            cleaned["settings"] = clean_params(cleaned["settings"])
        except ParamError as exc:
            raise ValidationError({f"settings.{exc.field}": str(exc)}) from None
    return cleaned


@transaction.atomic
def draft_save(*, story: Story, base_revision: int, **changes) -> Story:
    """Saves the writer's changes (text, title, memory, note, note_depth, settings, preset,
    model_spans, allow_training) if `base_revision` is the latest, else raises StaleRevision.

    The compare-and-set is one conditional UPDATE, so two saves racing from the same
    revision cannot both win, on SQLite or on PostgreSQL. A save that changes the text or
    the title adds a revision to the history.
    """
    changes = _check_changes(changes)
    current = Story.objects.get(pk=story.pk)
    if current.revision != base_revision:
        raise StaleRevision(current)
    if "model_spans" in changes:
        _check_spans(changes["model_spans"], changes.get("text", current.text))
    elif "text" in changes and changes["text"] != current.text:
        changes["model_spans"] = []
    changes = {field: value for field, value in changes.items() if getattr(current, field) != value}
    if not changes:
        return current

    updated = Story.objects.filter(pk=story.pk, revision=base_revision).update(
        **changes, revision=base_revision + 1, updated_at=timezone.now()
    )
    if not updated:
        raise StaleRevision(Story.objects.get(pk=story.pk))
    story.refresh_from_db()
    if "text" in changes or "title" in changes:
        Revision.objects.create(story=story, number=story.revision, title=story.title, text=story.text)
        # Autosave comes every few seconds while a writer types: thinning, which reads all
        # of the story's day-old revisions, runs on one save in THIN_EVERY.
        if story.revision % THIN_EVERY == 0:
            revisions_thin(story)
    return story


MAX_SPANS = 10_000


def _check_spans(spans, text: str) -> None:
    """[[start, end], ...], ordered, not overlapping, inside the text (UTF-16 units)."""
    length = utf16_length(text)
    problem = None
    if not isinstance(spans, list) or len(spans) > MAX_SPANS:
        problem = f"model_spans is a list of at most {MAX_SPANS:,} [start, end] pairs."
    else:
        previous_end = 0
        for span in spans:
            if not (
                isinstance(span, list)
                and len(span) == 2
                and all(is_int(n) for n in span)
                and previous_end <= span[0] < span[1] <= length
            ):
                problem = f"{span!r} is not an ordered [start, end] inside the text of {length} units."
                break
            previous_end = span[1]
    if problem:
        raise ValidationError({"model_spans": problem})


def revisions_thin(story: Story, *, now=None) -> int:
    """Keeps, of the revisions older than a day, the newest of each minute; returns how
    many were deleted. The newest revision is never deleted, so history is never empty."""
    now = now or timezone.now()
    old = Revision.objects.filter(story=story, created_at__lt=now - THIN_AFTER).order_by("-created_at", "-number")
    kept_minutes, doomed = set(), []
    for pk, created_at in old.values_list("pk", "created_at"):
        minute = created_at.replace(second=0, microsecond=0)
        if minute in kept_minutes:
            doomed.append(pk)
        else:
            kept_minutes.add(minute)
    newest = Revision.objects.filter(story=story).order_by("-number").values_list("pk", flat=True).first()
    doomed = [pk for pk in doomed if pk != newest]
    Revision.objects.filter(pk__in=doomed).delete()
    return len(doomed)


def revision_restore(*, story: Story, revision: Revision, base_revision: int) -> Story:
    """Makes one of the story's revisions' title and text the story's again, as a new revision."""
    return draft_save(story=story, base_revision=base_revision, text=revision.text, title=revision.title)


def share_enable(story: Story) -> Story:
    """Gives the story a read-only link; a story already shared keeps its link."""
    if not story.share_token:
        story.share_token = secrets.token_urlsafe(SHARE_TOKEN_BYTES)
        story.save(update_fields=["share_token"])
    return story


def share_revoke(story: Story) -> Story:
    """The link stops working at once; sharing again makes a new one."""
    story.share_token = ""
    story.save(update_fields=["share_token"])
    return story


def story_trash(story: Story) -> Story:
    story.deleted_at = timezone.now()
    story.share_token = ""
    story.save(update_fields=["deleted_at", "share_token"])
    return story


def story_untrash(story: Story) -> Story:
    story.deleted_at = None
    story.save(update_fields=["deleted_at"])
    return story


def trash_purge(*, now=None) -> int:
    """Deletes for good the stories that have been in the trash longer than TRASH_DAYS."""
    now = now or timezone.now()
    _, by_model = Story.objects.filter(deleted_at__lt=now - timedelta(days=TRASH_DAYS)).delete()
    return by_model.get(Story._meta.label, 0)


def _check_key_list(field: str, keys: str, *, required: bool) -> None:
    if required and not lorebook.split_keys(keys):
        raise ValidationError({field: "Give at least one keyword, separated by commas."})
    if len(keys) > LORE_KEYS_MAX_CHARS:
        raise ValidationError({field: f"Keywords take at most {LORE_KEYS_MAX_CHARS} characters."})
    for key in lorebook.split_keys(keys):
        try:
            lorebook.compile_key(key)
        except lorebook.KeyProblem as exc:
            raise ValidationError({field: str(exc)}) from None


def _check_lore(entry: LoreEntry) -> None:
    """An entry as it would be saved: ValidationError names its first wrong field."""
    _check_key_list("keys", entry.keys, required=True)
    if len(entry.text) > LORE_TEXT_MAX_CHARS:
        raise ValidationError({"text": f"A lore entry holds at most {LORE_TEXT_MAX_CHARS:,} characters."})
    _check_key_list("secondary_keys", entry.secondary_keys, required=False)
    if entry.logic not in lorebook.LOGICS:
        raise ValidationError({"logic": f"logic is one of {', '.join(lorebook.LOGICS)}."})
    if not 0 <= entry.priority <= lorebook.PRIORITY_MAX:
        raise ValidationError({"priority": f"priority is a whole number from 0 to {lorebook.PRIORITY_MAX}."})
    if entry.scan_chars is not None and not lorebook.SCAN_MIN <= entry.scan_chars <= lorebook.SCAN_MAX:
        raise ValidationError(
            {"scan_chars": f"scan_chars is from {lorebook.SCAN_MIN} to {lorebook.SCAN_MAX:,} characters, or null."}
        )


# An entry's scan depth left as it is; None is the default depth, so it cannot say that.
UNSET = object()


def _lore_apply(entry: LoreEntry, changes: dict) -> LoreEntry:
    """The changes that are given (None: left as it is; scan_chars: UNSET), checked."""
    for field, value in changes.items():
        if value is UNSET or (value is None and field != "scan_chars"):
            continue
        setattr(entry, field, value.strip() if field in ("keys", "secondary_keys") else value)
    _check_lore(entry)
    return entry


def lore_create(
    *,
    story: Story,
    keys: str,
    text: str,
    enabled: bool = True,
    secondary_keys: str | None = None,
    logic: str | None = None,
    priority: int | None = None,
    scan_chars: int | None | object = UNSET,
) -> LoreEntry:
    """A new entry; the rules left out take their defaults."""
    rules = {"secondary_keys": secondary_keys, "logic": logic, "priority": priority, "scan_chars": scan_chars}
    entry = _lore_apply(LoreEntry(story=story, keys=keys.strip(), text=text, enabled=enabled), rules)
    if story.lore.count() >= LORE_MAX_ENTRIES:
        raise ValidationError({"lore": f"A story holds at most {LORE_MAX_ENTRIES} lore entries."})
    entry.save()
    return entry


def lore_update(
    entry: LoreEntry,
    *,
    keys: str | None = None,
    text: str | None = None,
    enabled: bool | None = None,
    secondary_keys: str | None = None,
    logic: str | None = None,
    priority: int | None = None,
    scan_chars: int | None | object = UNSET,
) -> LoreEntry:
    """Changes the fields given; nothing is saved when one is wrong."""
    changes = {
        "keys": keys,
        "text": text,
        "enabled": enabled,
        "secondary_keys": secondary_keys,
        "logic": logic,
        "priority": priority,
        "scan_chars": scan_chars,
    }
    _lore_apply(entry, changes)
    entry.save()
    return entry


def lore_delete(entry: LoreEntry) -> None:
    entry.delete()


def story_export(story: Story) -> dict:
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "title": story.title,
        "text": story.text,
        "memory": story.memory,
        "note": story.note,
        "note_depth": story.note_depth,
        "lore": [
            {
                "keys": e.keys,
                "text": e.text,
                "enabled": e.enabled,
                "secondary_keys": e.secondary_keys,
                "logic": e.logic,
                "priority": e.priority,
                "scan_chars": e.scan_chars,
            }
            for e in story.lore.all()
        ],
        "settings": story.settings,
        # By name: another site may have the same preset under another id, or none.
        "preset": story.preset.name if story.preset else None,
        "exported_at": timezone.now().isoformat(),
    }


# The JSON type of each field of an export; the values are checked as a save checks them.
_IMPORT_FIELDS = {
    "title": check_string,
    "text": check_string,
    "memory": check_string,
    "note": check_string,
    "note_depth": check_int,
    "settings": check_dict,
    "lore": check_list,
}


def _check_lore_entry(name: str, entry) -> None:
    check_dict(name, entry)
    check_string(f"{name}.keys", entry.get("keys"))
    check_string(f"{name}.text", entry.get("text"))
    check_bool(f"{name}.enabled", entry.get("enabled", True))
    check_string(f"{name}.secondary_keys", entry.get("secondary_keys", ""))
    check_string(f"{name}.logic", entry.get("logic", "and_any"))
    check_int(f"{name}.priority", entry.get("priority", 100))
    if entry.get("scan_chars") is not None:
        check_int(f"{name}.scan_chars", entry["scan_chars"])


_LORE_RULES = ("secondary_keys", "logic", "priority", "scan_chars")


def _imported_title(*, owner, title: str) -> str:
    """The title, marked "(imported)" (then "(imported 2)", ...) when the writer's library
    already holds a story of that title: an import never sits unmarked beside its twin."""
    title = title.strip() or DEFAULT_TITLE
    taken = set(Story.objects.filter(owner=owner, deleted_at__isnull=True).values_list("title", flat=True))
    if title not in taken:
        return title
    for number in itertools.count(1):
        mark = " (imported)" if number == 1 else f" (imported {number})"
        marked = title[: TITLE_MAX_LENGTH - len(mark)] + mark
        if marked not in taken:
            return marked


@transaction.atomic
def story_import(*, owner, data: dict) -> Story:
    """Creates a story from a `json` export; a foreign or newer file gets a ValidationError
    and creates nothing."""
    if data.get("format") != EXPORT_FORMAT:
        raise ValidationError({"format": f'This is not a Storyteller export (format must be "{EXPORT_FORMAT}").'})
    if data.get("version") != EXPORT_VERSION:
        raise ValidationError({"version": f"Only version {EXPORT_VERSION} exports can be imported."})
    try:
        for field, check in _IMPORT_FIELDS.items():
            if data.get(field) is not None:
                check(field, data[field])
    except Invalid as exc:
        raise ValidationError({exc.field: exc.message}) from None
    lore = data.get("lore") or []
    if len(lore) > LORE_MAX_ENTRIES:
        raise ValidationError({"lore": f"A story holds at most {LORE_MAX_ENTRIES} lore entries."})
    for index, entry in enumerate(lore):
        try:
            _check_lore_entry(f"lore[{index}]", entry)
        except Invalid as exc:
            # The field is the entry, which a writer can find in the file; the message names its part.
            raise ValidationError({f"lore[{index}]": exc.message}) from None
    context = _check_changes(
        {f: data[f] for f in ("memory", "note", "note_depth", "settings") if data.get(f) is not None}
    )
    story = story_create(
        owner=owner,
        title=_imported_title(owner=owner, title=data.get("title") or ""),
        text=data.get("text") or "",
        story_settings=context.pop("settings", {}),
    )
    preset = data.get("preset")
    if isinstance(preset, str):
        context["preset_id"] = Preset.objects.filter(name=preset).values_list("pk", flat=True).first()
    if context:
        Story.objects.filter(pk=story.pk).update(**context)
        story.refresh_from_db()
    for index, entry in enumerate(lore):
        rules = {field: entry[field] for field in _LORE_RULES if field in entry}
        try:
            lore_create(
                story=story, keys=entry["keys"], text=entry["text"], enabled=entry.get("enabled", True), **rules
            )
        except ValidationError as exc:
            field, messages = next(iter(exc.message_dict.items()))
            raise ValidationError({f"lore[{index}]": f"{field}: {' '.join(messages)}"}) from None
    return story


# ---- the story's tree: every try, saved ----------------------------------------------

# tree_add's `parent` when the caller leaves it to the tree: the newest try whose text, up
# to the end of its words, begins the new try's text before its words.
FIND_PARENT = object()


def _tree_node_of(story: Story, node_id, field: str) -> TreeNode:
    node = story.tree.filter(pk=node_id).first() if is_int(node_id) else None
    if node is None:
        raise ValidationError({field: f"This story's tree has no node {node_id}."})
    return node


def _found_parent(story: Story, before: str) -> TreeNode | None:
    # Newest first, a few at a time: the parent is nearly always among the newest, and each
    # node holds a whole story. A node with no text before the end of its words (an empty
    # restore) would begin every text: it is nobody's parent by this rule.
    for node in story.tree.filter(end__gt=0).order_by("-id").only("id", "text", "end").iterator(chunk_size=8):
        if before.startswith(utf16_slice(node.text, 0, node.end)):
            return node
    return None


class TreeAdded(NamedTuple):
    node: TreeNode
    # The old tries let go to make room for it.
    pruned: list[int]
    # False when the tree already held the try under its key (a POST sent again).
    created: bool = True


@transaction.atomic
def tree_add(
    *,
    story: Story,
    kind: str,
    text: str,
    start: int,
    end: int,
    parent=FIND_PARENT,
    label: str = "",
    model_spans: list | None = None,
    generation_id: int | None = None,
    make_current: bool = True,
    key: str = "",
) -> TreeAdded:
    """Saves one try as a node of the story's tree and makes it the current one (unless
    `make_current` is false: a try shown to the writer but not used). `parent` is a node
    id, None for a try that starts the tree, or FIND_PARENT. A try whose `key` the tree
    holds already is that node, saved once. ValidationError names the first wrong field
    and saves nothing."""
    if len(key) > TREE_KEY_MAX_CHARS:
        raise ValidationError({"key": f"A key is at most {TREE_KEY_MAX_CHARS} characters."})
    if kind not in TreeNode.Kind.values:
        raise ValidationError({"kind": f"kind is one of {', '.join(TreeNode.Kind.values)}."})
    _check_text(text)
    if len(label) > TREE_LABEL_MAX_CHARS:
        raise ValidationError({"label": f"A label is at most {TREE_LABEL_MAX_CHARS} characters."})
    try:
        before, words = utf16_slice(text, 0, start), utf16_slice(text, start, end)
    except ValueError as exc:
        raise ValidationError({"start": f"start and end: {exc}"}) from None
    model_spans = model_spans or []
    _check_spans(model_spans, text)
    generation = None
    if generation_id is not None:
        generation = story.generations.filter(pk=generation_id).first()
        if generation is None:
            raise ValidationError({"generation_id": f"This story has no generation {generation_id}."})
    # Two tries saved at once then see each other (the second joins the first's group), and
    # pruning reads the current try as saved.
    _lock_tree(story)
    if key and (known := story.tree.filter(key=key).first()) is not None:
        return TreeAdded(known, [], created=False)
    if parent is FIND_PARENT:
        parent = _found_parent(story, before)
    elif parent is not None:
        parent = _tree_node_of(story, parent, "parent")
    node = TreeNode.objects.create(
        story=story,
        parent=parent,
        kind=kind,
        label=label.strip(),
        text=text,
        start=start,
        end=end,
        words=words,
        size=len(text),
        model_spans=model_spans,
        generation=generation,
        key=key,
    )
    siblings = story.tree.filter(parent=parent, start=start).exclude(pk=node.pk).order_by("id")
    node.group = next(
        (
            s.group
            for s in siblings.only("id", "group", "text", "start").iterator()
            if utf16_slice(s.text, 0, start) == before
        ),
        node.id,
    )
    node.save(update_fields=["group"])
    if make_current:
        Story.objects.filter(pk=story.pk).update(tree_node=node)
        story.tree_node = node
    return TreeAdded(node, tree_prune(story))


def tree_prune(story: Story) -> list[int]:
    """Deletes the oldest tries with no children, off the path to the current one, while the
    tree holds more than TREE_MAX_NODES tries or TREE_MAX_CHARS characters; returns their ids."""
    totals = story.tree.aggregate(count=Count("id"), chars=Sum("size"))
    count, chars = totals["count"], totals["chars"] or 0
    if count <= TREE_MAX_NODES and chars <= TREE_MAX_CHARS:
        return []
    rows = list(story.tree.values_list("id", "parent_id", "size"))
    kept = set(selectors.tree_path_ids(story))
    children = Counter(parent_id for _, parent_id, _ in rows)
    size = {node_id: size for node_id, _, size in rows}
    parent_of = {node_id: parent_id for node_id, parent_id, _ in rows}
    doomed = []
    # Oldest first; a parent whose last child goes becomes a leaf, and may go in turn.
    leaves = sorted(n for n in size if not children.get(n) and n not in kept)
    while leaves and (count > TREE_MAX_NODES or chars > TREE_MAX_CHARS):
        node_id = leaves.pop(0)
        doomed.append(node_id)
        count, chars = count - 1, chars - size[node_id]
        parent_id = parent_of[node_id]
        children[parent_id] -= 1
        if parent_id is not None and not children[parent_id] and parent_id not in kept:
            bisect.insort(leaves, parent_id)
    TreeNode.objects.filter(pk__in=doomed).delete()
    return doomed


def _lock_tree(story: Story) -> None:
    """Locks the story's row until the transaction ends: its tree changes one write at a time."""
    Story.objects.select_for_update().filter(pk=story.pk).values_list("pk").first()


@transaction.atomic
def tree_make_current(story: Story, node: TreeNode) -> Story:
    """The node the editor's text was made from now; its text is the client's to show.
    TreeNode.DoesNotExist when the node was deleted (or pruned) since it was read."""
    _lock_tree(story)
    if not story.tree.filter(pk=node.pk).exists():
        raise TreeNode.DoesNotExist(f"This story's tree has no node {node.pk}.")
    Story.objects.filter(pk=story.pk).update(tree_node=node)
    story.tree_node = node
    return story


@transaction.atomic
def tree_delete(node: TreeNode) -> int:
    """Deletes a try and every try that went on from it; the path to the current try stays
    (ValidationError). Returns how many were deleted."""
    # Locked, so that no try after this one is made current between the check and the delete.
    _lock_tree(node.story)
    if node.id in selectors.tree_path_ids(node.story):
        raise ValidationError({"node": "The current text goes on from this try: make another one current first."})
    deleted, _ = node.delete()
    return deleted
