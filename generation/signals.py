"""Worker start-up: load the active model, then follow the admin's choice and report."""

import logging
import os
import socket
import threading
import time

from celery.signals import worker_ready

log = logging.getLogger(__name__)

# How often a worker looks at the active configuration and reports its state.
REPORT_EVERY_S = 3


@worker_ready.connect
def start_worker_threads(sender=None, **kwargs):
    queues = _queues(sender)
    if "training" in queues:
        from generation.training.services import training_jobs_fail_stalled

        if stalled := training_jobs_fail_stalled():
            log.warning("Marked %s stalled training job(s) failed", stalled)
    if "generation" not in queues:
        return  # the training worker loads the models its jobs name, not the active one
    # In a thread, so that the worker starts consuming at once; the first task waits for
    # the first load instead of failing.
    threading.Thread(target=_supervise, name="model-supervisor", daemon=True).start()


def _queues(consumer) -> set[str]:
    """The queues this worker consumes (celery -Q)."""
    try:
        return set(consumer.app.amqp.queues.consume_from or ())
    except AttributeError:
        return {"generation"}


def _supervise():
    """Loads the active model before the first request; then, every few seconds, starts
    loading another one when the admin has activated it (generation.worker.ModelSlot does
    the switch) and reports this worker's state. The first report comes before the first
    load: the worker is alive, and takes tasks, from the start."""
    from django.db import close_old_connections

    from generation import selectors, services
    from generation.worker import slot

    name = f"{socket.gethostname()}:{os.getpid()}"
    while True:
        try:
            slot.follow(selectors.model_wanted())
        except Exception:
            log.exception("Could not read the active model configuration")
        services.worker_report(name, slot.status())
        close_old_connections()
        time.sleep(REPORT_EVERY_S)
