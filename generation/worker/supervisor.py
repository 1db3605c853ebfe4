"""Worker start-up: load the active model, then follow the admin's choice, report, and do
the site's housekeeping that must happen without anyone watching: every few seconds the
generations whose worker is gone (services.generations_sweep), hourly the trash."""

import functools
import logging
import os
import secrets
import socket
import threading
import time
from datetime import timedelta

from celery.signals import worker_ready
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from generation import realtime, services
from generation.models import Worker
from generation.training.services import training_jobs_fail_stalled
from storyteller.stories.services import trash_purge

log = logging.getLogger(__name__)

# How often a worker looks at the active configuration and reports its state.
REPORT_EVERY_S = 3
# How often it does the housekeeping (every generation worker does; twice is harmless).
HOUSEKEEPING_EVERY_S = 3600


@worker_ready.connect
def start_worker_threads(sender=None, **kwargs):
    queues = _queues(sender)
    if "training" in queues:
        if stalled := training_jobs_fail_stalled():
            log.warning("Marked %s stalled training job(s) failed", stalled)
    if "generation" not in queues:
        # The training worker loads the models its jobs name, not the active one; it
        # sweeps the generations too, so that they end even when no generation worker is left.
        threading.Thread(target=_sweep_forever, name="generation-sweeper", daemon=True).start()
        return
    # The worker's own modules, and torch with them, load here rather than at import: the
    # web process imports this module too (generation.apps connects the signal).
    import torch

    from generation.worker.serving import model_wanted, slot

    # Its share of the machine's cores, before any engine starts (several workers on one
    # machine would otherwise each take them all).
    if settings.STORYTELLER_WORKER_THREADS:
        torch.set_num_threads(settings.STORYTELLER_WORKER_THREADS)

    # In a thread, so that the worker starts consuming at once; the first task waits for
    # the first load instead of failing.
    threading.Thread(target=_supervise, args=(slot, model_wanted), name="model-supervisor", daemon=True).start()


def _queues(consumer) -> set[str]:
    """The queues this worker consumes (celery -Q)."""
    try:
        return set(consumer.app.amqp.queues.consume_from or ())
    except AttributeError:
        return {"generation"}


@functools.cache
def worker_name() -> str:
    """This worker process as its reports and the generations it takes name it: host, pid
    and a mark of its own, since a restarted container has the same host name and often
    the same pid, and must not pass for the worker that died there."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _supervise(slot, wanted):
    """Loads the active model before the first request; then, every few seconds, starts
    loading another one when the admin has activated it (serving.ModelSlot does the switch)
    and reports this worker's state. The first report comes before the first load: the
    worker is alive, and takes tasks, from the start."""
    name = worker_name()
    housekeeping_due = time.monotonic()
    while True:
        try:
            slot.follow(wanted())
        except Exception:
            log.exception("Could not read the active model configuration")
        worker_report(name, slot.status())
        sweep()
        if time.monotonic() >= housekeeping_due:
            housekeeping_due = time.monotonic() + HOUSEKEEPING_EVERY_S
            housekeeping()
        close_old_connections()
        time.sleep(REPORT_EVERY_S)


def sweep() -> None:
    """services.generations_sweep, logged: lost generations end, stranded ones go back."""
    if not settings.STORYTELLER_WORKER_SWEEPS:
        return
    try:
        ended, put_back = services.generations_sweep()
    except Exception:
        log.warning("Could not sweep the generations", exc_info=True)
        return
    if ended:
        log.warning("Ended %s generation(s) whose worker stopped", ended)
    if put_back:
        log.warning("Put %s generation(s) of a gone worker back in the queue", put_back)


def _sweep_forever() -> None:
    while True:
        sweep()
        close_old_connections()
        time.sleep(REPORT_EVERY_S)


def housekeeping() -> None:
    """Empties the trash of stories deleted longer ago than stories.models.TRASH_DAYS."""
    try:
        if purged := trash_purge():
            log.info("Deleted %s story(ies) from the trash for good", purged)
    except Exception:
        log.warning("Could not empty the trash", exc_info=True)


def worker_report(name: str, status: dict) -> None:
    """Records a worker's state for the admin (the Worker row) and for /healthz (a
    heartbeat in Redis); either may be away without stopping the other."""
    now = timezone.now()
    try:
        Worker.objects.update_or_create(name=name, defaults={**status, "last_heartbeat": now})
        # Rows of workers that stopped long ago (each start is a new name).
        Worker.objects.filter(last_heartbeat__lt=now - timedelta(days=1)).delete()
    except Exception:
        log.warning("Could not record the worker's state in the database", exc_info=True)
    try:
        realtime.worker_heartbeat(name, status)
    except Exception:
        log.warning("Heartbeat to Redis failed; retrying", exc_info=True)
