import dataclasses
import json

from django.core.management.base import BaseCommand, CommandError

from generation.management import active_model, bench_context
from generation.worker import serving


def _sizes(raw: str) -> list[int]:
    try:
        sizes = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--sizes takes token counts separated by commas, like 350,1750; got {raw!r}") from None
    if not sizes:
        raise CommandError("--sizes needs at least one prompt size, like 350,1750.")
    if any(size < 1 for size in sizes):
        raise CommandError("--sizes must all be 1 token or more.")
    if len(set(sizes)) < len(sizes):
        raise CommandError(f"--sizes lists a size twice: {raw!r}")
    return sizes


class Command(BaseCommand):
    help = (
        "Measures the time to first token of long stories with the active model (or --model): cold, "
        "retried, with a sentence appended, and how long a streaming story stalls while a long prompt is read."
    )

    def add_arguments(self, parser):
        parser.add_argument("--sizes", default="350,1750,3500,6300", help="Prompt sizes in tokens, e.g. 350,1750.")
        parser.add_argument("--new-tokens", type=int, default=16, help="New tokens per request.")
        active_model.add_arguments(parser)
        parser.add_argument(
            "--context-window",
            type=int,
            help="Tokens, instead of the configuration's window (on the CPU 4,096 unless set), "
            "e.g. 8192 to measure prompts of 6,300 tokens.",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table.")

    def handle(self, *args, **options):
        sizes = _sizes(options["sizes"])
        if options["new_tokens"] < 1:
            raise CommandError("--new-tokens must be at least 1.")
        window = options["context_window"]
        if window is not None and window < 2:
            raise CommandError("--context-window must be at least 2 tokens.")
        config = active_model.model_config_chosen(options)
        # The worker's engine, except that every token is its own Delta, so that the gaps
        # between a stream's tokens can be timed.
        engine_config = dataclasses.replace(serving.engine_config(config), coalesce_ms=0)
        if window:
            engine_config = dataclasses.replace(engine_config, context_window=window)
        engine = active_model.engine_load(config, engine_config)
        try:
            report = bench_context.run(engine, sizes=sizes, new_tokens=options["new_tokens"])
        except bench_context.BenchError as exc:
            raise CommandError(str(exc)) from None
        finally:
            engine.shutdown()
        self.stdout.write(json.dumps(report) if options["json"] else bench_context.table(report))
