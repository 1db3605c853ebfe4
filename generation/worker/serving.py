"""The model a generation worker serves.

`slot` is what the Celery worker serves: one engine that new generations go to. When the
admin activates another configuration, the new model loads beside the old one and takes
the new generations once it is ready; the old one finishes what it has and is then let
go. A model that fails to load leaves the old one serving, and says why in the worker's
status. No request fails, and none waits, because of a switch.
"""

import logging
import threading
from dataclasses import dataclass

from django.conf import settings

from engine.config import EngineConfig, ModelSpec
from engine.errors import ModelLoadError
from generation import selectors
from generation.worker.engines import Engines, engines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Wanted:
    """The active configuration, as the worker needs it: what to load, its name, and a key
    that changes whenever the configuration is saved (a failed load is retried then)."""

    spec: ModelSpec
    engine: EngineConfig
    config_name: str
    key: tuple

    @property
    def runs(self) -> tuple:
        """What a loaded engine must match to serve this: the model and the engine's limits."""
        return (self.spec, self.engine)


def engine_config(config) -> EngineConfig:
    """The engine a worker runs for a model configuration: its limits, and this site's
    largest reading pass."""
    return EngineConfig(**config.engine_limits(), max_prefill_tokens=settings.STORYTELLER_MAX_PREFILL_TOKENS)


def model_wanted() -> Wanted:
    """The active configuration, as this worker needs it."""
    config = selectors.model_config_active()
    return Wanted(
        spec=selectors.model_spec(config),
        engine=engine_config(config),
        config_name=config.name,
        key=(config.pk, config.updated_at),
    )


@dataclass(eq=False)
class Lease:
    engine: object
    runs: tuple
    config_name: str
    users: int = 0


class ModelSlot:
    def __init__(self, registry: Engines = engines):
        self._engines = registry
        self._lock = threading.Lock()  # guards the fields below
        self._load_lock = threading.Lock()  # one load at a time
        self._serving: Lease | None = None
        self._retiring: list[Lease] = []
        self._loading = ""
        self._error = ""
        self._failed_key: tuple | None = None

    def acquire(self, wanted) -> Lease:
        """The engine for a new generation, held until `release`. Before any model serves
        (a request during the first load) this waits for the load of `wanted()`, and
        raises ModelLoadError when it fails."""
        with self._lock:
            if self._serving is not None:
                self._serving.users += 1
                return self._serving
        self.load(wanted())
        with self._lock:
            self._serving.users += 1
            return self._serving

    def release(self, lease: Lease) -> None:
        with self._lock:
            lease.users -= 1
        self.retire_idle()

    def load(self, wanted: Wanted) -> None:
        """Loads the wanted model (unless it serves already) and makes it serve new
        generations. A failure leaves the serving model as it is, and raises."""
        with self._load_lock:
            with self._lock:
                if self._serving is not None and self._serving.runs == wanted.runs:
                    self._serving.config_name = wanted.config_name
                    return
                self._loading = wanted.config_name
            try:
                engine = self._engines.acquire(wanted.spec, wanted.engine)
            except Exception as exc:
                with self._lock:
                    self._loading = ""
                    self._error = f"{wanted.config_name}: {exc}"
                    self._failed_key = wanted.key
                if isinstance(exc, ModelLoadError):
                    raise
                raise ModelLoadError(str(exc)) from exc
            with self._lock:
                if self._serving is not None:
                    self._retiring.append(self._serving)
                self._serving = Lease(engine, wanted.runs, wanted.config_name)
                self._loading = self._error = ""
                self._failed_key = None
        self.retire_idle()

    def follow(self, wanted: Wanted) -> None:
        """Starts loading the active configuration, in a thread of its own, when it is not
        the one serving; one that failed is tried again only once it has been changed."""
        with self._lock:
            serving = self._serving is not None and self._serving.runs == wanted.runs
            if serving or self._loading or wanted.key == self._failed_key:
                return
            self._loading = wanted.config_name
        threading.Thread(target=self._load_logged, args=(wanted,), name="model-load", daemon=True).start()

    def _load_logged(self, wanted: Wanted) -> None:
        try:
            self.load(wanted)
        except Exception:
            log.exception("Could not load %s; the model loaded before, if any, goes on serving", wanted.config_name)

    def retire_idle(self) -> None:
        """Lets go of replaced models once their last generation has finished."""
        with self._lock:
            idle = [lease for lease in self._retiring if lease.users == 0]
            self._retiring = [lease for lease in self._retiring if lease.users > 0]
        for lease in idle:
            self._engines.release(lease.engine)

    def status(self) -> dict:
        """For the worker's heartbeat and its row in the admin."""
        with self._lock:
            serving = self._serving
            live = sum(lease.users for lease in [*([serving] if serving else []), *self._retiring])
            if serving is None:
                model = {
                    "model_name": "",
                    "dtype": "",
                    "device": "",
                    "load_seconds": None,
                    "config_name": "",
                    "kv_cache": {},
                }
            else:
                loaded = serving.engine.loaded
                model = {
                    "model_name": serving.engine.name,
                    "dtype": loaded.precision,
                    "device": str(loaded.device),
                    "load_seconds": round(loaded.load_seconds, 2),
                    "config_name": serving.config_name,
                    "kv_cache": serving.engine.cache_stats(),
                }
            state = "ready" if serving is not None else "error" if self._error and not self._loading else "loading"
            return {**model, "state": state, "loading": self._loading, "error": self._error, "live_requests": live}


slot = ModelSlot()
