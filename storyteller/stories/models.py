from django.conf import settings
from django.db import models

from generation.lore import LOGICS as LORE_LOGICS
from generation.lore import split_keys
from storyteller.stories.text import word_count

TITLE_MAX_LENGTH = 200
MEMORY_MAX_CHARS = 20_000
NOTE_MAX_CHARS = 5_000
NOTE_MAX_DEPTH = 50
LORE_MAX_ENTRIES = 200
LORE_KEYS_MAX_CHARS = 500
LORE_TEXT_MAX_CHARS = 10_000


# A story in the trash can be restored for this many days; then it is deleted for good.
TRASH_DAYS = 30


class Story(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stories")
    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    text = models.TextField(blank=True)
    # Grows by one with every save that changes anything; clients send it back as
    # base_revision so that a stale save is refused instead of overwriting newer text.
    revision = models.PositiveIntegerField(default=1)
    # Sampling parameters chosen for this story; they override the preset's, which
    # override the admin's defaults.
    settings = models.JSONField(default=dict, blank=True)
    preset = models.ForeignKey("generation.Preset", null=True, blank=True, on_delete=models.SET_NULL)
    # Always at the top of the model's context (generation/context.py).
    memory = models.TextField(blank=True, max_length=MEMORY_MAX_CHARS)
    # Inserted note_depth paragraphs before the end of the story in the context.
    note = models.TextField(blank=True, max_length=NOTE_MAX_CHARS)
    note_depth = models.PositiveSmallIntegerField(default=3)
    # Where the text is the model's, not yet edited by the writer: [[start, end], ...] in
    # UTF-16 code units (the editor's string indices). A text change without them clears them.
    model_spans = models.JSONField(default=list, blank=True)
    # The read-only link /s/<token>/; empty when the story is not shared.
    share_token = models.CharField(max_length=64, blank=True, db_index=True)
    # The writer lets the site's operators train models on this story (off until they do).
    allow_training = models.BooleanField(default=False)
    # The node of the story's tree the text was last made from (a try, or one the writer
    # made current); the Tree panel highlights the path to it.
    tree_node = models.ForeignKey("TreeNode", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # In the trash since; purged 30 days later.
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name_plural = "stories"
        constraints = [
            models.CheckConstraint(condition=models.Q(note_depth__lte=NOTE_MAX_DEPTH), name="story_note_depth_max"),
        ]

    def __str__(self):
        return self.title

    @property
    def word_count(self) -> int:
        return word_count(self.text)


class Revision(models.Model):
    """The story as it was after one save; the history a writer can go back to."""

    story = models.ForeignKey(Story, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["story", "number"], name="revision_unique_number")]

    def __str__(self):
        return f"{self.story_id} r{self.number}"

    @property
    def word_count(self) -> int:
        return word_count(self.text)


class LoreEntry(models.Model):
    """Text the model reads when one of its keys appears near the end of the story (and its
    secondary keys agree); generation/lore.py decides."""

    LOGICS = list(LORE_LOGICS.items())

    story = models.ForeignKey(Story, on_delete=models.CASCADE, related_name="lore")
    # Comma-separated keywords or phrases, matched as whole words in any case, or regular
    # expressions written /like this/i.
    keys = models.CharField(max_length=LORE_KEYS_MAX_CHARS)
    text = models.TextField(max_length=LORE_TEXT_MAX_CHARS)
    enabled = models.BooleanField(default=True)
    # Keys that must also appear (and_any, and_all), or must not (not_any, not_all).
    secondary_keys = models.CharField(max_length=LORE_KEYS_MAX_CHARS, blank=True)
    logic = models.CharField(max_length=8, choices=LOGICS, default="and_any")
    # Taken first, and put first, when several fire; the highest first.
    priority = models.PositiveSmallIntegerField(default=100)
    # How many characters from the end of the story the keys are looked for in; None: 3,000.
    scan_chars = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "lore entries"

    def __str__(self):
        return self.keys

    @property
    def key_list(self) -> list[str]:
        return split_keys(self.keys)

    @property
    def secondary_key_list(self) -> list[str]:
        return split_keys(self.secondary_keys)


# A story's tree keeps at most this many tries, and this many characters of text in all;
# past either, the oldest tries off the current path go first.
TREE_MAX_NODES = 500
TREE_MAX_CHARS = 20_000_000
TREE_LABEL_MAX_CHARS = 100
TREE_KEY_MAX_CHARS = 64


class TreeNode(models.Model):
    """One try at the story: a generation, a retry, a candidate rewrite, a selection tool's
    passage or a restore. It keeps the story's text as it was right after the try, with the
    try's own words at [start, end) in UTF-16 code units (the editor's string indices)."""

    class Kind(models.TextChoices):
        GENERATION = "generation"
        RETRY = "retry"
        CANDIDATE = "candidate"
        TOOL = "tool"
        RESTORE = "restore"

    story = models.ForeignKey(Story, on_delete=models.CASCADE, related_name="tree")
    # The try this one went on from; None for a try that starts the tree (there may be several).
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    # Tries with the same parent and the same text before their words are alternatives of
    # each other, the editor's "1 of 3": the id of the first of them.
    group = models.PositiveIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # What the writer sees in the Tree panel beside the words: "Rewrite", "Revision 12", ...
    label = models.CharField(max_length=TREE_LABEL_MAX_CHARS, blank=True)
    text = models.TextField(blank=True)
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    # text[start:end], kept apart so that the whole tree is listed without every text.
    words = models.TextField(blank=True)
    # len(text), kept so that the tree's size is summed without reading every text.
    size = models.PositiveIntegerField(default=0)
    model_spans = models.JSONField(default=list, blank=True)
    generation = models.ForeignKey("generation.Generation", null=True, blank=True, on_delete=models.SET_NULL)
    # The client's name for this try, so that a POST sent again (its answer was lost) saves
    # it once; blank when the client gave none.
    key = models.CharField(max_length=TREE_KEY_MAX_CHARS, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(start__lte=models.F("end")), name="tree_node_span"),
            models.UniqueConstraint(
                fields=["story", "key"], condition=~models.Q(key=""), name="tree_node_key_once_per_story"
            ),
        ]

    def __str__(self):
        return f"{self.story_id} node {self.id} ({self.kind})"
