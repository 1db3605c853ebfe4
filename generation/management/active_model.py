"""The model a benchmark command runs: the active configuration's, or the one its options name."""

from django.core.management.base import CommandError

from engine.config import EngineConfig
from engine.engine import Engine
from engine.errors import ModelLoadError
from generation import selectors
from generation.models import ModelConfig


def add_arguments(parser) -> None:
    parser.add_argument("--model", help="A model source instead of the active configuration's.")
    parser.add_argument("--dtype", help="auto, float32, bfloat16, float16 or int8 instead of the configuration's.")


def model_config_chosen(options: dict) -> ModelConfig:
    """The active configuration (unsaved), with --model and --dtype applied."""
    config = selectors.model_config_active()
    if options["model"]:
        config.source = options["model"]
    if options["dtype"]:
        config.dtype = options["dtype"]
    return config


def engine_load(config: ModelConfig, engine_config: EngineConfig) -> Engine:
    try:
        return Engine.load(selectors.model_spec(config), engine_config)
    except ModelLoadError as exc:
        raise CommandError(str(exc)) from None
