import logging

from celery import shared_task

from generation import services

log = logging.getLogger(__name__)


@shared_task(name="generation.generate", queue="generation", ignore_result=True)
def generate_task(generation_id: int) -> None:
    # No automatic retry: a failure is recorded on the row and shown to the writer, who
    # decides whether to generate again; re-running behind their back could double text.
    try:
        services.generation_run(generation_id)
    except Exception as exc:
        log.exception("Generation %s failed", generation_id)
        services.generation_fail(generation_id, f"The generation failed: {exc}")


@shared_task(name="generation.inspect", queue="generation", ignore_result=True)
def inspect_task(reply_to: str, request: dict, request_id: str | None) -> None:
    try:
        services.inspection_run(reply_to, request, request_id)
    except Exception as exc:
        log.exception("Inspection %s failed", request.get("view"))
        services.inspection_failed(reply_to, request_id, f"Looking inside failed: {exc}")


def _training_threads() -> None:
    import torch
    from django.conf import settings

    torch.set_num_threads(settings.STORYTELLER_TRAINING_THREADS)


@shared_task(name="generation.train", queue="training", ignore_result=True)
def train_task(job_id: int) -> None:
    # Its own queue and worker (concurrency 1): a long job never holds up a generation.
    from generation.training import services as training

    _training_threads()
    training.training_job_run(job_id)


@shared_task(name="generation.compare", queue="training", ignore_result=True)
def compare_task(comparison_id: int) -> None:
    from generation.training import services as training

    _training_threads()
    training.comparison_run(comparison_id)
