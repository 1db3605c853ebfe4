import signal
import sys
import time
from pathlib import Path

import torch
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from engine.errors import CorpusError
from engine.training.settings import DEFAULTS, HELDOUT_PERCENT, SEQUENCE_LENGTH
from generation import services
from generation.models import ModelConfig, TrainingJob
from generation.training import services as training
from generation.training import uploads
from generation.worker.training import training_job_run
from storyteller.stories.models import Story

BAR = 24


def _ids(value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--stories takes story ids separated by commas, like 3,7; got {value!r}.") from None


class Command(BaseCommand):
    help = (
        "Fine-tunes a configuration's model on stories and plain-text files, here in the terminal (the admin's "
        "training jobs do the same in the training worker). The result is a new, inactive configuration."
    )

    def add_arguments(self, parser):
        parser.add_argument("--stories", type=_ids, default=[], help="Story ids, separated by commas: 3,7.")
        parser.add_argument("--files", nargs="+", default=[], help="UTF-8 plain-text files.")
        parser.add_argument("--base", help="The configuration to train (by name); default the active one.")
        parser.add_argument("--name", help="The job's name; default from the base's.")
        parser.add_argument("--method", choices=TrainingJob.Method.values, default=DEFAULTS.method)
        parser.add_argument("--steps", type=int, default=DEFAULTS.steps)
        parser.add_argument("--learning-rate", type=float, default=DEFAULTS.learning_rate)
        parser.add_argument("--sequence-length", type=int, default=SEQUENCE_LENGTH)
        parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
        parser.add_argument("--time-limit", type=int, default=round(DEFAULTS.time_limit_s / 60), help="Minutes.")
        parser.add_argument("--heldout-percent", type=int, default=HELDOUT_PERCENT)
        parser.add_argument("--eval-every", type=int, default=DEFAULTS.eval_every)
        parser.add_argument("--lora-rank", type=int, default=DEFAULTS.lora_rank)
        parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
        parser.add_argument("--threads", type=int, help="CPU threads; default all (the worker uses half).")
        parser.add_argument("--activate", action="store_true", help="Make the trained model the active one.")

    def handle(self, *args, **options):
        if options["threads"] is not None:
            if options["threads"] < 1:
                raise CommandError("--threads is at least 1.")
            torch.set_num_threads(options["threads"])
        base = self._base(options["base"])
        stories = list(Story.objects.filter(pk__in=options["stories"]))
        missing = sorted(set(options["stories"]) - {story.pk for story in stories})
        if missing:
            raise CommandError(f"No story with id {', '.join(map(str, missing))}.")
        files = []
        for name in options["files"]:
            path = Path(name)
            if not path.is_file():
                raise CommandError(f"There is no file {name}.")
            try:
                uploads.size_checked(path.name, path.stat().st_size)
            except CorpusError as exc:
                raise CommandError(str(exc)) from None
            files.append((path.name, path.read_bytes()))
        bounds = {
            name: options[name]
            for name in (
                "method",
                "steps",
                "learning_rate",
                "sequence_length",
                "batch_size",
                "heldout_percent",
                "eval_every",
                "lora_rank",
                "seed",
            )
        }
        try:
            job = training.training_job_create(
                name=options["name"] or f"{base.name} tuned"[:80],
                base=base,
                stories=stories,
                files=files,
                time_limit_minutes=options["time_limit"],
                **bounds,
            )
        except (CorpusError, training.JobRefused) as exc:
            raise CommandError(str(exc)) from None
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None

        self.stderr.write(f"Training job {job.pk}: {job.method} on {base.name}, {job.steps} steps. Ctrl-C stops it.")
        previous = signal.signal(signal.SIGINT, lambda *_: self._cancel(job))
        try:
            job = training_job_run(job.pk, echo=_Bar(self.stderr, job.steps))
        finally:
            signal.signal(signal.SIGINT, previous)
        self.stderr.write("")
        if job is None:
            raise CommandError("The job was deleted while it trained; nothing was kept.")
        if job.status == TrainingJob.Status.FAILED:
            raise CommandError(job.error_message)
        before, after = (job.evaluations[0][2], job.evaluations[-1][2]) if job.evaluations else (None, None)
        if before is not None and len(job.evaluations) > 1:
            self.stdout.write(f"Held-out perplexity: {before:.2f} before, {after:.2f} after {job.step} steps.")
        if job.result is None:
            self.stdout.write("Nothing was trained.")
            return
        if options["activate"]:
            services.model_config_activate(job.result)
        state = "active now" if options["activate"] else "inactive: activate it in the admin"
        self.stdout.write(f'Saved to {job.output_dir}; configuration "{job.result.name}" ({state}).')

    def _base(self, name: str | None) -> ModelConfig:
        if name is None:
            return services.model_config_active_saved()
        base = ModelConfig.objects.filter(name=name).first()
        if base is None:
            names = ", ".join(ModelConfig.objects.values_list("name", flat=True))
            raise CommandError(f"No configuration named {name!r}; there are: {names}.")
        return base

    def _cancel(self, job):
        self.stderr.write("\nStopping after this step; what was learned is kept. (Ctrl-C again to abort.)")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        training.training_job_cancel(job)


class _Bar:
    """A one-line progress bar on stderr, with a line per evaluation."""

    def __init__(self, out, steps: int):
        self.out = out
        self.steps = steps
        self.started = time.monotonic()
        self.interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.before = None

    def __call__(self, event: dict) -> None:
        kind = event["type"]
        if kind == "started":
            self.out.write(
                f"Corpus: {event['tokens']:,} tokens, {event['train_examples']} examples to train on, "
                f"{event['heldout_examples']} held out; training {event['trainable']:,} of "
                f"{event['parameters']:,} parameters."
            )
        elif kind == "evaluation":
            if self.before is None:
                self.before = event["perplexity"]
            line = f"step {event['step']}: held-out loss {event['loss']:.3f}, perplexity {event['perplexity']:.2f}"
            self.out.write(("\r" if self.interactive else "") + line.ljust(90))
        elif kind == "step":
            step, elapsed = event["step"], event["elapsed_s"]
            done = int(BAR * step / self.steps)
            left = elapsed / step * (self.steps - step)
            line = (
                f"step {step}/{self.steps} [{'#' * done}{'.' * (BAR - done)}] loss {event['loss']:.3f} "
                f"· {elapsed / step:.2f} s/step · {left:.0f} s left"
            )
            if self.interactive:
                self.out.write("\r" + line, ending="")
                self.out.flush()
            elif step == self.steps or step % max(1, self.steps // 20) == 0:
                self.out.write(line)
