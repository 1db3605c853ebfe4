"""The worker process's engines: one per model, loaded once, shared by every task thread."""

import logging
import threading

from generation.engine.config import EngineConfig, ModelSpec

log = logging.getLogger(__name__)

_engines: dict = {}
_lock = threading.Lock()


def engine_for(spec: ModelSpec, config: EngineConfig | None = None):
    """The process's engine for `spec`, loading the model on first use.

    The lock makes concurrent first requests wait for one load instead of each loading
    its own copy of the model.
    """
    from generation.engine.engine import Engine

    with _lock:
        engine = _engines.get(spec)
        if engine is None:
            engine = Engine.load(spec, config)
            log.info(
                "Loaded model %s (%s, %s) in %.1f s",
                engine.name,
                engine.loaded.dtype,
                engine.loaded.device,
                engine.loaded.load_seconds,
            )
            _engines[spec] = engine
        return engine


def loaded_engines() -> list[dict]:
    """What this process has loaded, for its heartbeat."""
    with _lock:
        return [
            {"name": e.name, "source": spec.source, "dtype": str(e.loaded.dtype), "device": str(e.loaded.device)}
            for spec, e in _engines.items()
        ]
