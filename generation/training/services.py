"""Training jobs and side-by-side comparisons, on the web side: creating them, queueing
them for the training worker (which runs them: generation/worker/training.py), cancelling
them."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from engine.errors import EMPTY_CORPUS
from generation import queue, services
from generation.models import Comparison, ModelConfig, TrainingFile, TrainingJob
from generation.training import selectors as training_selectors
from generation.training import uploads

# A running job whose row has not moved for this long had its worker stop under it.
STALLED_AFTER = timedelta(minutes=10)


class JobRefused(ValueError):
    """A job that cannot start: the message says why."""


def training_job_check(*, stories, files) -> None:
    """What every way of setting up a job (the admin, `manage.py train`) requires of its
    corpus before anything is created: something to train on."""
    if not stories and not files:
        raise JobRefused(EMPTY_CORPUS)


def stories_check_trainable(stories, user) -> None:
    """Raises JobRefused naming the stories `user` may not train on: their writers have not
    allowed it (training_selectors.stories_trainable_by)."""
    allowed = set(
        training_selectors.stories_trainable_by(user)
        .filter(pk__in=[s.pk for s in stories])
        .values_list("pk", flat=True)
    )
    refused = [story for story in stories if story.pk not in allowed]
    if refused:
        names = ", ".join(f"{story.title} (story {story.pk})" for story in refused)
        raise JobRefused(
            f"Not allowed for training by their writers: {names}. A writer allows it in the story's settings."
        )


def training_job_create(
    *, name: str, base: ModelConfig | None, stories=(), files=(), user=None, **bounds
) -> TrainingJob:
    """A queued job over `stories` and `files` ([(name, bytes)], read as UTF-8 text here,
    so a wrong file is refused before anything is created); without a `base`, on the model
    writers use now. Call training_job_queue to run it in the training worker."""
    texts = [(file_name, uploads.read_text_file(file_name, data)) for file_name, data in files]
    training_job_check(stories=stories, files=texts)
    stories_check_trainable(stories, user)
    if base is None:
        # A fresh site's implicit default becomes a row here, so that the job can name it.
        base = services.model_config_active_saved()
    job = TrainingJob(name=name, base=base, created_by=user, **bounds)
    job.full_clean()
    with transaction.atomic():
        job.save()
        job.stories.set(stories)
        TrainingFile.objects.bulk_create(TrainingFile(job=job, name=n, text=t) for n, t in texts)
    return job


def training_job_queue(job: TrainingJob) -> None:
    queue.enqueue_on_commit("generation.train", job.id)


def training_job_cancel(job: TrainingJob) -> bool:
    """Asks a running job to stop (it does within one step and keeps what it learned); a
    queued one is cancelled at once. False when it had already ended."""
    now = timezone.now()
    if TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.QUEUED).update(
        status=TrainingJob.Status.CANCELLED, stop_reason="cancelled", cancel_requested=True, finished_at=now
    ):
        return True
    return bool(TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).update(cancel_requested=True))


def training_jobs_fail_stalled() -> int:
    """Jobs left running by a training worker that stopped (killed, or the machine went
    down) are marked failed, so that nobody waits on them; returns how many."""
    return TrainingJob.objects.filter(
        status=TrainingJob.Status.RUNNING, updated_at__lt=timezone.now() - STALLED_AFTER
    ).update(
        status=TrainingJob.Status.FAILED,
        error_message="The training worker stopped while this job ran; start the job again.",
        finished_at=timezone.now(),
    )


def comparison_start(*, first, second, prompt, seed, max_new_tokens, temperature, user=None) -> Comparison:
    comparison = Comparison(
        first=first,
        second=second,
        prompt=prompt,
        seed=seed,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        created_by=user,
    )
    comparison.full_clean()
    comparison.save()
    queue.enqueue_on_commit("generation.compare", comparison.id)
    return comparison
