"""Reads of training: which stories a job may use, and where a job stands, as its admin
page shows it."""

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from generation.models import TrainingJob
from storyteller.stories.models import Story


def stories_trainable_by(user):
    """The stories a job started by `user` may train on: those whose writers allowed it
    (Story.allow_training, off until they turn it on in the editor's settings), and the
    user's own; never one in the trash. Without a user (manage.py train), the allowed only."""
    allowed = Q(allow_training=True) | (Q(owner=user) if user is not None else Q())
    return Story.objects.filter(allowed, deleted_at__isnull=True)


def training_corpus_summary(job: TrainingJob) -> str:
    if job.corpus_tokens is None:
        return "counted when it starts"
    return f"{job.corpus_tokens:,} tokens: {job.train_examples} to train on, {job.heldout_examples} held out"


def training_progress(job: TrainingJob) -> dict:
    """What the job's page shows: where it stands, and its curves."""
    now = timezone.now()
    elapsed = ((job.finished_at or now) - job.started_at).total_seconds() if job.started_at else 0.0
    remaining = until = None
    if job.status == TrainingJob.Status.RUNNING and job.step and job.seconds_per_step is not None:
        # The steps left at the pace of the steps so far, unless the time limit stops it first.
        by_steps = job.seconds_per_step * (job.steps - job.step)
        by_limit = max(0.0, job.time_limit_minutes * 60.0 - elapsed)
        remaining, until = (by_steps, "steps") if by_steps <= by_limit else (by_limit, "time limit")
    evaluations = job.evaluations
    return {
        "id": job.id,
        "status": job.status,
        "stop_reason": job.stop_reason or None,
        "error": job.error_message or None,
        "step": job.step,
        "steps": job.steps,
        "elapsed_s": round(elapsed, 1),
        "remaining_s": round(remaining, 1) if remaining is not None else None,
        "remaining_until": until,
        "cancel_requested": job.cancel_requested,
        "examples": {"train": job.train_examples, "heldout": job.heldout_examples, "tokens": job.corpus_tokens},
        "losses": job.losses,
        "evaluations": [{"step": s, "loss": loss, "perplexity": p} for s, loss, p in evaluations],
        "perplexity_before": evaluations[0][2] if evaluations and evaluations[0][0] == 0 else None,
        "perplexity_after": evaluations[-1][2] if len(evaluations) > 1 else None,
        "result": {
            "id": job.result_id,
            "name": job.result.name,
            "url": reverse("admin:generation_modelconfig_change", args=[job.result_id]),
        }
        if job.result_id
        else None,
        # The page's read-only fields that change as the job runs, as the admin shows them,
        # so that the page polling this never contradicts itself.
        "fields": {
            "status": job.get_status_display(),
            "stop_reason": job.stop_reason,
            "error_message": job.error_message,
            "corpus": training_corpus_summary(job),
            "output_dir": job.output_dir,
        },
    }
