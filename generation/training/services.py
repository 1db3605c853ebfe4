"""Training jobs and side-by-side comparisons: creating them, running them (in the Celery
worker of the `training` queue, or in `manage.py train`), cancelling them.

A job's row is its progress: the step, the losses and evaluations so far, written at most
once a second while it runs, which the admin's job page reads.
"""

import logging
import re
import time
from collections import OrderedDict
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from generation.engine.config import ModelSpec, SamplingParams
from generation.engine.loader import ModelLoadError
from generation.models import Comparison, ModelConfig, TrainingFile, TrainingJob
from generation.services import model_config_save
from generation.training import corpus as corpora
from generation.training import trainer

log = logging.getLogger(__name__)

# Progress is written to the job's row at most this often (and at every evaluation).
SAVE_EVERY_S = 1.0
# A running job whose row has not moved for this long had its worker stop under it.
STALLED_AFTER = timedelta(minutes=10)
# Configurations a training worker keeps loaded for comparisons.
COMPARE_CACHE = 2

# The fields a trained configuration takes from its base, beside its own name and model.
_COPIED = [
    f.name
    for f in ModelConfig._meta.concrete_fields
    if f.name not in ("id", "name", "source", "adapter", "is_active", "created_at", "updated_at")
]


class JobRefused(ValueError):
    """A job that cannot start: the message says why."""


def training_job_create(*, name: str, base: ModelConfig, stories=(), files=(), user=None, **bounds) -> TrainingJob:
    """A queued job over `stories` and `files` ([(name, bytes)], read as UTF-8 text here,
    so a wrong file is refused before anything is created). Call training_job_queue to
    run it in the training worker."""
    texts = [(file_name, corpora.read_text_file(file_name, data)) for file_name, data in files]
    if not stories and not texts:
        raise JobRefused(corpora.EMPTY)
    job = TrainingJob(name=name, base=base, created_by=user, **bounds)
    job.full_clean()
    with transaction.atomic():
        job.save()
        job.stories.set(stories)
        TrainingFile.objects.bulk_create(TrainingFile(job=job, name=n, text=t) for n, t in texts)
    return job


def training_job_queue(job: TrainingJob) -> None:
    from generation.tasks import train_task

    transaction.on_commit(lambda: train_task.delay(job.id))


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


def documents_of(job: TrainingJob) -> list[corpora.Document]:
    documents = [corpora.Document(f'"{story.title}" (story {story.id})', story.text) for story in job.stories.all()]
    documents += [corpora.Document(file.name, file.text) for file in job.files.all()]
    return documents


def output_dir(job: TrainingJob) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", job.name.lower()).strip("-")[:40] or "model"
    return Path(settings.STORYTELLER_MODELS_DIR) / "trained" / f"job-{job.id}-{slug}"


def _settings(job: TrainingJob) -> trainer.TrainingSettings:
    return trainer.TrainingSettings(
        method=job.method,
        steps=job.steps,
        learning_rate=job.learning_rate,
        batch_size=job.batch_size,
        time_limit_s=job.time_limit_minutes * 60.0,
        eval_every=job.eval_every,
        lora_rank=job.lora_rank,
        seed=job.seed,
    )


class _Progress:
    """Writes the trainer's events to the job's row, and answers whether to stop."""

    def __init__(self, job: TrainingJob, echo=None):
        self.job = job
        self.echo = echo
        self.last_save = 0.0
        self.stepping_since = None  # when the first step began: after the first evaluation

    def __call__(self, event: dict) -> None:
        job = self.job
        kind = event["type"]
        if kind == "started":
            job.train_examples = event["train_examples"]
            job.heldout_examples = event["heldout_examples"]
            job.corpus_tokens = event["tokens"]
        elif kind == "step":
            job.step = event["step"]
            job.losses.append([event["step"], round(event["loss"], 5)])
            if self.stepping_since is not None:
                job.seconds_per_step = (time.monotonic() - self.stepping_since) / event["step"]
        elif kind == "evaluation":
            if event["step"] == 0:
                self.stepping_since = time.monotonic()
            job.evaluations.append([event["step"], round(event["loss"], 5), round(event["perplexity"], 3)])
        if kind != "step" or time.monotonic() - self.last_save >= SAVE_EVERY_S:
            self.save()
        if self.echo:
            self.echo(event)

    def save(self) -> None:
        self.last_save = time.monotonic()
        fields = ["step", "seconds_per_step", "losses", "evaluations", "train_examples", "heldout_examples"]
        fields += ["corpus_tokens"]
        TrainingJob.objects.filter(pk=self.job.pk).update(
            updated_at=timezone.now(), **{name: getattr(self.job, name) for name in fields}
        )

    def should_stop(self) -> bool:
        return TrainingJob.objects.filter(pk=self.job.pk, cancel_requested=True).exists()


def training_job_run(job_id: int, *, echo=None) -> TrainingJob | None:
    """Runs a queued job to its end: loads the base model, builds the corpus, trains,
    saves the result and makes it a configuration. A job that another worker took, or
    that was cancelled while queued, is left alone (None). `echo` also receives every
    progress event (the command's progress bar)."""
    from generation import selectors
    from generation.engine.loader import load

    if not TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).update(
        status=TrainingJob.Status.RUNNING, started_at=timezone.now()
    ):
        return None
    job = TrainingJob.objects.select_related("base").get(pk=job_id)
    progress = _Progress(job, echo)
    try:
        base_spec = selectors.model_spec(job.base)
        # Gradients want float32; LoRA trains on the plain base, full fine-tuning on the
        # base as it runs (its adapter merged).
        spec = ModelSpec(
            source=base_spec.source,
            dtype="float32",
            device=base_spec.device,
            models_dir=base_spec.models_dir,
            adapter=base_spec.adapter if job.method == TrainingJob.Method.FULL else "",
        )
        loaded = load(spec)
        corpus = corpora.build(
            loaded.tokenizer,
            documents_of(job),
            sequence_length=job.sequence_length,
            heldout_percent=job.heldout_percent,
        )
        outcome = trainer.train(
            loaded,
            corpus,
            _settings(job),
            save_to=output_dir(job),
            on_event=progress,
            should_stop=progress.should_stop,
        )
    except (corpora.CorpusError, trainer.TrainingError, ModelLoadError) as exc:
        return _fail(job, str(exc))
    except Exception as exc:
        log.exception("Training job %s failed", job_id)
        return _fail(job, f"Training failed: {exc}")
    progress.save()
    job.output_dir = str(outcome.saved_to)
    job.stop_reason = outcome.reason
    try:
        return _finish(job, outcome)
    except ValidationError as exc:
        return _fail(job, f"The trained model was saved incompletely: {'; '.join(exc.messages)}")
    except Exception as exc:
        log.exception("Training job %s could not record its result", job_id)
        return _fail(job, f"The trained model could not be recorded: {exc}")


def _finish(job: TrainingJob, outcome: trainer.Outcome) -> TrainingJob | None:
    """Ends a job that trained. What it learned (one step or more, cancelled or not)
    becomes a configuration, written in one transaction with the job's end and only while
    the job still runs: no configuration outlives a failed end, nor comes from a job
    marked failed meanwhile (training_jobs_fail_stalled) or deleted."""
    status = TrainingJob.Status.CANCELLED if outcome.reason == "cancelled" else TrainingJob.Status.FINISHED
    with transaction.atomic():
        if not _end(job, status):
            return TrainingJob.objects.filter(pk=job.pk).first()
        if outcome.steps:
            job.result = _result_config(job, outcome)
            TrainingJob.objects.filter(pk=job.pk).update(result=job.result)
    return job


def _fail(job: TrainingJob, error: str) -> TrainingJob | None:
    job.result = None
    _end(job, TrainingJob.Status.FAILED, error=error)
    return TrainingJob.objects.filter(pk=job.pk).first()


def _end(job: TrainingJob, status, *, error: str = "") -> bool:
    """Records how the job ended, unless it no longer runs (failed meanwhile, or deleted)."""
    job.status, job.error_message, job.finished_at = status, error, timezone.now()
    fields = ["status", "error_message", "finished_at", "output_dir", "stop_reason", "result"]
    running = TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING)
    return bool(running.update(updated_at=timezone.now(), **{name: getattr(job, name) for name in fields}))


def _result_config(job: TrainingJob, outcome: trainer.Outcome) -> ModelConfig:
    """The trained model as a configuration, inactive until the operator activates it;
    checked like any configuration, so one whose saved model is incomplete is refused."""
    base = job.base
    config = ModelConfig(**{name: getattr(base, name) for name in _COPIED})
    config.name = f"{job.name} (job {job.id}, {outcome.steps} steps)"[:100]
    if job.method == TrainingJob.Method.LORA:
        config.source, config.adapter = base.source, str(outcome.saved_to)
    else:
        config.source, config.adapter = str(outcome.saved_to), ""
    config.is_active = False
    return model_config_save(config)


# ---- side by side ----------------------------------------------------------------------

_lab: OrderedDict = OrderedDict()


def _lab_engine(spec: ModelSpec):
    """An engine for a comparison, kept for the next one (the last COMPARE_CACHE)."""
    from generation.engine.engine import Engine

    engine = _lab.pop(spec, None) or Engine.load(spec)
    _lab[spec] = engine
    while len(_lab) > COMPARE_CACHE:
        _lab.popitem(last=False)[1].shutdown()
    return engine


def comparison_start(*, first, second, prompt, seed, max_new_tokens, temperature, user=None) -> Comparison:
    from generation.tasks import compare_task

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
    transaction.on_commit(lambda: compare_task.delay(comparison.id))
    return comparison


def comparison_run(comparison_id: int) -> None:
    """Continues the prompt with both configurations, the same seed and sampling."""
    from generation import selectors
    from generation.engine.engine import Request
    from generation.engine.events import Finished

    if not Comparison.objects.filter(pk=comparison_id, status=Comparison.Status.QUEUED).update(
        status=Comparison.Status.RUNNING
    ):
        return
    comparison = Comparison.objects.select_related("first", "second").get(pk=comparison_id)
    first = comparison.first
    params = SamplingParams(
        max_new_tokens=comparison.max_new_tokens,
        temperature=comparison.temperature,
        top_k=first.top_k,
        top_p=first.top_p,
        repetition_penalty=first.repetition_penalty,
        seed=comparison.seed,
    )
    texts = []
    try:
        for config in (comparison.first, comparison.second):
            engine = _lab_engine(selectors.model_spec(config))
            handle = engine.submit(Request(f"compare-{comparison.id}-{config.id}", comparison.prompt, params))
            finished = next(e for e in handle.events() if isinstance(e, Finished))
            if finished.error:
                raise RuntimeError(finished.error)
            texts.append(finished.text)
    except Exception as exc:
        log.exception("Comparison %s failed", comparison_id)
        comparison.status, comparison.error_message = Comparison.Status.FAILED, str(exc)
        comparison.save(update_fields=["status", "error_message"])
        return
    comparison.first_text, comparison.second_text = texts
    comparison.status = Comparison.Status.FINISHED
    comparison.save(update_fields=["status", "first_text", "second_text"])
