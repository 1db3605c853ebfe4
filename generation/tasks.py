"""Celery tasks: adapters that hand a task's arguments to the worker's code.

The web process sends tasks by name (generation/queue.py) and never needs this module,
but Celery may import it there when the app is finalized; so the worker's code, and
torch with it, is imported inside each task, where only a worker gets.
"""

import logging

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(name="generation.generate", ignore_result=True)
def generate_task(generation_id: int) -> None:
    from generation.worker import relay

    # No automatic retry: a failure is recorded on the row and shown to the writer, who
    # decides whether to generate again; re-running behind their back could double text.
    try:
        relay.generation_run(generation_id)
    except Exception as exc:
        log.exception("Generation %s failed", generation_id)
        relay.generation_fail(generation_id, f"The generation failed: {exc}")


@shared_task(name="generation.inspect", ignore_result=True)
def inspect_task(reply_to: str, request: dict, request_id: str | None) -> None:
    from generation.worker import inspection

    try:
        inspection.inspection_run(reply_to, request, request_id)
    except Exception as exc:
        log.exception("Inspection %s failed", request.get("view"))
        inspection.request_failed(reply_to, request_id, f"Looking inside failed: {exc}")


@shared_task(name="generation.context", ignore_result=True)
def context_task(reply_to: str, story_id: int, text: str, max_new_tokens: int, request_id: str | None) -> None:
    from generation.worker import inspection, preview

    try:
        preview.context_preview_run(reply_to, story_id, text, max_new_tokens, request_id)
    except Exception as exc:
        log.exception("The context preview of story %s failed", story_id)
        inspection.request_failed(reply_to, request_id, f"Counting the context failed: {exc}")


@shared_task(name="generation.train", ignore_result=True)
def train_task(job_id: int) -> None:
    from generation.worker import training

    training.use_training_threads()
    training.training_job_run(job_id)


@shared_task(name="generation.compare", ignore_result=True)
def compare_task(comparison_id: int) -> None:
    from generation.worker import training

    training.use_training_threads()
    training.comparison_run(comparison_id)
