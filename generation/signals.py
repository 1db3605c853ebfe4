"""Worker start-up: load the active model before the first request, then keep a heartbeat."""

import logging
import os
import socket
import threading
import time

from celery.signals import worker_ready

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = 10


@worker_ready.connect
def start_worker_threads(**kwargs):
    # In a thread, so that the worker starts consuming at once; the first task waits on
    # the engine lock for the load instead of failing.
    threading.Thread(target=_preload_then_beat, name="model-preload", daemon=True).start()


def _preload_then_beat():
    from django.db import close_old_connections

    from generation import realtime, selectors
    from generation.worker import engine_for, loaded_engines

    name = f"{socket.gethostname()}:{os.getpid()}"

    def beat(state: dict) -> None:
        try:
            realtime.worker_heartbeat(name, state)
        except Exception:
            log.warning("Heartbeat to Redis failed; retrying", exc_info=True)

    # The worker is alive (and takes tasks, which wait for the model) from now on, not only
    # once the model has loaded: the first heartbeat comes before the load.
    beat({"models": [], "loading": True, "error": ""})
    error = ""
    try:
        engine_for(selectors.model_spec(selectors.model_config_active()))
    except Exception as exc:
        log.exception("Could not preload the active model; the first generation will try again")
        error = str(exc)
    finally:
        close_old_connections()
    while True:
        beat({"models": loaded_engines(), "error": error})
        time.sleep(HEARTBEAT_EVERY_S)
