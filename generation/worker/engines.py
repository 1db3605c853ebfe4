"""The one registry of engines in a worker process.

Whoever runs a model here takes it from `engines`: the serving model and the one loading
to replace it (serving.py), the two models of a comparison (training.py), the `generate`
command. A model is loaded once, however many ask for it at the same moment, and shut down
when its last holder lets it go, unless that holder asked to keep it for the next one.
"""

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

# Torch loads with the engine: this module is imported only where a model runs.
from engine.config import EngineConfig, ModelSpec
from engine.engine import Engine
from engine.errors import ModelLoadError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Entry:
    loaded: threading.Event = field(default_factory=threading.Event)
    engine: Engine | None = None
    error: BaseException | None = None
    holders: int = 0


class Engines:
    def __init__(self):
        self._lock = threading.Lock()  # guards the two fields below
        self._entries: dict[tuple, _Entry] = {}
        self._kept: OrderedDict[tuple, None] = OrderedDict()  # idle, kept on purpose; oldest first

    def acquire(self, spec: ModelSpec, config: EngineConfig | None = None) -> Engine:
        """The engine for this model and these limits, held until `release`. The first to
        ask loads it; anyone asking meanwhile waits for that load rather than loading a
        second copy. A failed load raises to each of them, and the next call tries again."""
        key = (spec, config or EngineConfig())
        with self._lock:
            entry = self._entries.get(key)
            loads = entry is None
            if loads:
                entry = self._entries[key] = _Entry()
            entry.holders += 1
            self._kept.pop(key, None)
        if loads:
            try:
                entry.engine = Engine.load(spec, key[1])
                log.info(
                    "Loaded model %s (%s, %s) in %.1f s",
                    entry.engine.name,
                    entry.engine.loaded.precision,
                    entry.engine.loaded.device,
                    entry.engine.loaded.load_seconds,
                )
            except BaseException as exc:
                entry.error = exc
                with self._lock:
                    if self._entries.get(key) is entry:
                        del self._entries[key]
                raise
            finally:
                entry.loaded.set()
        entry.loaded.wait()
        if entry.error is not None:
            # Each waiter gets its own exception: one object raised in several threads
            # would have its traceback written by all of them.
            raise ModelLoadError(str(entry.error)) from entry.error
        return entry.engine

    def release(self, engine: Engine, *, keep: int = 0) -> None:
        """Lets go of an engine from `acquire`. Once nobody holds it, it is shut down, or,
        with `keep`, kept loaded among the last `keep` engines released that way."""
        closing = []
        with self._lock:
            key = next((k for k, e in self._entries.items() if e.engine is engine), None)
            if key is None:
                raise ValueError(f"{engine.name} is not held in this registry; release it once per acquire.")
            entry = self._entries[key]
            entry.holders -= 1
            if entry.holders == 0:
                if keep:
                    self._kept[key] = None
                else:
                    closing.append(key)
            while keep and len(self._kept) > keep:
                closing.append(self._kept.popitem(last=False)[0])
            closing = [(k, self._entries.pop(k)) for k in closing if self._entries[k].holders == 0]
        for _, idle in closing:
            idle.engine.shutdown()
            log.info("Released model %s", idle.engine.name)


engines = Engines()
