import json

from django.core.management.base import BaseCommand, CommandError

from engine.config import EngineConfig
from generation import selectors
from generation.management import active_model, bench


def _levels(raw: str) -> list[int]:
    try:
        levels = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--concurrency takes integers separated by commas, like 1,8,32; got {raw!r}") from None
    if not levels or any(level < 1 for level in levels):
        raise CommandError("--concurrency levels must be 1 or more.")
    return levels


class Command(BaseCommand):
    help = (
        "Measures the generation engine against transformers' model.generate with the active model "
        "(or --model), on the same prompts and parameters, and prints the figures."
    )

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", default="1,8,32", help="Stories at once, e.g. 1,8,16,32.")
        parser.add_argument("--new-tokens", type=int, default=64, help="New tokens per story.")
        parser.add_argument("--hf-stories", type=int, default=3, help="Stories for the model.generate baseline.")
        active_model.add_arguments(parser)
        parser.add_argument(
            "--plain-linears",
            action="store_true",
            help="Keep nn.Linear (no SkinnyLinear), to compare the two; float32 weights only (--dtype float32).",
        )
        parser.add_argument(
            "--record-choices",
            action="store_true",
            help="Record the top 5 candidates of every token, as stories with Record choices on do.",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object (the default is indented).")

    def handle(self, *args, **options):
        levels = _levels(options["concurrency"])
        if options["new_tokens"] < 2:
            raise CommandError("--new-tokens must be at least 2.")
        config = active_model.model_config_chosen(options)
        engine = active_model.engine_load(
            config, EngineConfig(max_batch_size=max(levels), skinny_linears=not options["plain_linears"])
        )
        try:
            report = bench.run(
                engine,
                selectors.model_spec(config),
                concurrency_levels=levels,
                new_tokens=options["new_tokens"],
                hf_stories=options["hf_stories"],
                record_choices=5 if options["record_choices"] else 0,
            )
        finally:
            engine.shutdown()
        self.stdout.write(json.dumps(report) if options["json"] else json.dumps(report, indent=2))
