from django.conf import settings
from django.db import models

TITLE_MAX_LENGTH = 200


class Story(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stories")
    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    text = models.TextField(blank=True)
    # Grows by one with every save that changes anything; clients send it back as
    # base_revision so that a stale save is refused instead of overwriting newer text.
    revision = models.PositiveIntegerField(default=1)
    # Sampling parameters chosen for this story; they override the admin's defaults.
    settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name_plural = "stories"

    def __str__(self):
        return self.title

    @property
    def word_count(self) -> int:
        return len(self.text.split())


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
