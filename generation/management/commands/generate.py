import sys

from django.core.management.base import BaseCommand, CommandError

from engine.engine import Request
from engine.errors import ModelLoadError
from engine.events import Delta, Finished
from generation import params as sampling
from generation import selectors
from generation.worker.engines import engines


class Command(BaseCommand):
    help = "Streams a continuation of TEXT to stdout with the active model, through the engine."

    def add_arguments(self, parser):
        parser.add_argument("text", help="The story so far.")
        parser.add_argument("--max-new-tokens", type=int)
        parser.add_argument("--temperature", type=float)
        parser.add_argument("--top-p", type=float)
        parser.add_argument("--top-k", type=int)
        parser.add_argument("--repetition-penalty", type=float)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--stop", action="append", help="A stop sequence; may be given more than once.")
        parser.add_argument("--model", help="A model source instead of the active configuration's.")

    def handle(self, *args, **options):
        config = selectors.model_config_active()
        if options["model"]:
            config.source = options["model"]
        names = ("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "stop")
        requested = {name: options[name] for name in names if options[name] is not None}
        try:
            resolved = sampling.resolve_params(defaults=config.default_params(), story_settings={}, requested=requested)
            engine = engines.acquire(selectors.model_spec(config))
        except sampling.ParamError as exc:
            raise CommandError(str(exc)) from None
        except ModelLoadError as exc:
            raise CommandError(str(exc)) from None
        try:
            self._stream(engine, options["text"], resolved)
        finally:
            engines.release(engine)

    def _stream(self, engine, text: str, resolved: dict) -> None:
        handle = engine.submit(Request("cli", text, sampling.to_sampling(resolved)))
        for event in handle.events():
            if isinstance(event, Delta):
                self.stdout.write(event.text, ending="")
                self.stdout.flush()
            elif isinstance(event, Finished):
                self.stdout.write("")
                self.stderr.write(
                    f"[{event.reason}; {event.new_tokens} tokens; seed {resolved['seed']}; "
                    f"{event.tokens_per_s or 0:.1f} tokens/s]"
                )
                if event.reason == "error":
                    raise CommandError(event.error or "generation failed")
        sys.stdout.flush()
