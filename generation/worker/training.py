"""Training jobs and comparisons, run in the worker of the `training` queue (or in
`manage.py train`).

A job's row is its progress: the step, the losses and evaluations so far, written at most
once a second while it runs, which the admin's job page reads.
"""

import logging
import re
import time
from pathlib import Path

import torch
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from engine.config import ModelSpec, SamplingParams
from engine.engine import Request
from engine.errors import CorpusError, ModelLoadError, TrainingError
from engine.events import Finished
from engine.loader import load
from engine.threads import release_openmp_threads
from engine.training import corpus as corpora
from engine.training import trainer
from engine.training.settings import TrainingSettings
from generation import selectors
from generation.models import Comparison, ModelConfig, TrainingJob
from generation.services import model_config_save
from generation.training.selectors import stories_trainable_by
from generation.worker.engines import engines

log = logging.getLogger(__name__)

# Progress is written to the job's row at most this often (and at every evaluation).
SAVE_EVERY_S = 1.0
# Configurations a training worker keeps loaded for comparisons.
COMPARE_CACHE = 2

# The fields a trained configuration takes from its base, beside its own name and model.
_COPIED = [
    f.name
    for f in ModelConfig._meta.concrete_fields
    if f.name not in ("id", "name", "source", "adapter", "is_active", "created_at", "updated_at")
]


def use_training_threads() -> None:
    """Keeps training to its share of the CPU (STORYTELLER_TRAINING_THREADS), leaving the
    rest to the generation worker on the same machine."""
    torch.set_num_threads(settings.STORYTELLER_TRAINING_THREADS)


def documents_of(job: TrainingJob) -> list[corpora.Document]:
    """The job's stories and files as documents. A story is read only if it may still be
    trained on when the job runs: its writer may have taken the permission back (or
    trashed it) while the job waited."""
    stories = job.stories.filter(pk__in=stories_trainable_by(job.created_by).values("pk"))
    documents = [corpora.Document(f'"{story.title}" (story {story.id})', story.text) for story in stories]
    documents += [corpora.Document(file.name, file.text) for file in job.files.all()]
    return documents


def output_dir(job: TrainingJob) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", job.name.lower()).strip("-")[:40] or "model"
    return Path(settings.STORYTELLER_MODELS_DIR) / "trained" / f"job-{job.id}-{slug}"


def _settings(job: TrainingJob) -> TrainingSettings:
    return TrainingSettings(
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
    except (CorpusError, TrainingError, ModelLoadError) as exc:
        return _fail(job, str(exc))
    except Exception as exc:
        log.exception("Training job %s failed", job_id)
        return _fail(job, f"Training failed: {exc}")
    finally:
        # This worker thread lives on: its OpenMP team would slow the comparison engines.
        release_openmp_threads()
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


def comparison_run(comparison_id: int) -> None:
    """Continues the prompt with both configurations, the same seed and sampling."""
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
            # Kept loaded for the next comparison, which most often runs the same two.
            engine = engines.acquire(selectors.model_spec(config))
            try:
                handle = engine.submit(Request(f"compare-{comparison.id}-{config.id}", comparison.prompt, params))
                finished = next(e for e in handle.events() if isinstance(e, Finished))
            finally:
                engines.release(engine, keep=COMPARE_CACHE)
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
