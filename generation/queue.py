"""Work for the workers, sent by task name: the web side never imports the code that runs
it (generation/tasks.py imports services, never the reverse). Which queue a task goes to
is set once, in settings.CELERY_TASK_ROUTES."""

from django.db import transaction

from storyteller.celery import app


def enqueue(task: str, *args) -> None:
    app.send_task(task, args=args)


def enqueue_on_commit(task: str, *args) -> None:
    """Sends the task once the current transaction commits: a worker that picks it up at
    once must find the rows it names, and a rolled-back request sends nothing."""
    transaction.on_commit(lambda: enqueue(task, *args))
