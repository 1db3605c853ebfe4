"""A job's progress as its page reads it: the remaining time is estimated from the pace of
its steps, not from its time limit."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from generation import services
from generation.models import TrainingJob
from generation.training import selectors
from generation.worker import training

pytestmark = pytest.mark.django_db


def running(**fields):
    """A job the worker took 100 s ago, 100 steps and an hour long."""
    fields = {"started_at": timezone.now() - timedelta(seconds=100), **fields}
    base = services.model_config_active_saved()
    return TrainingJob.objects.create(
        name="Lighthouse", base=base, status="running", steps=100, time_limit_minutes=60, **fields
    )


def test_it_estimates_the_remaining_time_from_the_pace_of_the_steps():
    # 100 s since the worker took it, most of it loading the model and measuring the
    # perplexity before training; the ten steps since took 2 s each.
    progress = selectors.training_progress(running(step=10, seconds_per_step=2.0))
    assert (progress["remaining_s"], progress["remaining_until"]) == (180.0, "steps")


def test_it_says_the_time_limit_comes_first_when_it_does():
    progress = selectors.training_progress(
        running(step=10, seconds_per_step=2.0, started_at=timezone.now() - timedelta(seconds=3500))
    )
    assert progress["remaining_until"] == "time limit" and 99 <= progress["remaining_s"] <= 100


def test_it_gives_no_estimate_before_the_first_step():
    progress = selectors.training_progress(running(step=0))
    assert (progress["remaining_s"], progress["remaining_until"]) == (None, None)


def test_it_measures_the_pace_from_the_first_step_on():
    job = running()
    progress = training._Progress(job)
    progress({"type": "evaluation", "step": 0, "loss": 2.0, "perplexity": 7.4})
    time.sleep(0.2)
    progress({"type": "step", "step": 1, "loss": 1.9, "elapsed_s": 30.2})
    progress({"type": "step", "step": 2, "loss": 1.8, "elapsed_s": 30.4})
    progress.save()
    job.refresh_from_db()
    # About 0.1 s a step; the 100 s before training started are not in it.
    assert 0.1 <= job.seconds_per_step < 1.0
