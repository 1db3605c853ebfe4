"""What a job leaves behind. The rule: a job keeps a configuration only for a model it
trained (at least one step) and saved whole, written together with the job's end; a job
that failed, trained nothing, or no longer exists leaves none. A cancelled job that
trained keeps what it learned."""

import pytest

from generation import services
from generation.models import ModelConfig, TrainingJob
from generation.training import services as training
from generation.worker.training import output_dir, training_job_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def job(style_stories, settings, tmp_path):
    settings.STORYTELLER_MODELS_DIR = tmp_path / "models"
    base = services.model_config_active_saved()
    job = TrainingJob.objects.create(name="Lighthouse", base=base, steps=5, sequence_length=32, eval_every=10)
    job.stories.set(style_stories)
    return job


def run(job, when, then):
    """Runs the job here; `then(job)` happens at the first progress event `when` accepts."""
    done = []

    def echo(event):
        if not done and when(event):
            done.append(then(job))

    return training_job_run(job.pk, echo=echo)


def trained_configurations():
    return list(ModelConfig.objects.exclude(name="Default"))


def test_it_keeps_a_configuration_for_a_cancelled_job_that_trained_steps(job):
    ended = run(job, lambda e: e["type"] == "step" and e["step"] == 2, training.training_job_cancel)
    assert (ended.status, ended.step) == ("cancelled", 2)
    assert trained_configurations() == [ended.result] and ended.result.adapter == ended.output_dir


def test_it_leaves_no_configuration_when_cancelled_before_its_first_step(job):
    ended = run(job, lambda e: e["type"] == "started", training.training_job_cancel)
    assert (ended.status, ended.step, ended.result) == ("cancelled", 0, None)
    assert trained_configurations() == []


def test_it_leaves_no_configuration_for_a_job_marked_failed_while_it_trained(job):
    def failed_meanwhile(job):
        # What training_jobs_fail_stalled does to a job whose row stood still too long.
        TrainingJob.objects.filter(pk=job.pk).update(status="failed", error_message="The training worker stopped")

    ended = run(job, lambda e: e["type"] == "saved", failed_meanwhile)
    assert (ended.status, ended.result) == ("failed", None)
    assert trained_configurations() == []


def test_it_leaves_no_configuration_for_a_job_deleted_while_it_trained(job):
    ended = run(job, lambda e: e["type"] == "saved", lambda job: TrainingJob.objects.filter(pk=job.pk).delete())
    assert ended is None
    assert trained_configurations() == []


def test_it_fails_the_job_instead_of_keeping_a_configuration_for_a_model_it_could_not_save_whole(job):
    def lose_the_adapter(job):
        (output_dir(job) / "adapter_config.json").unlink()

    ended = run(job, lambda e: e["type"] == "saved", lose_the_adapter)
    assert (ended.status, ended.result) == ("failed", None)
    assert "is not an adapter folder" in ended.error_message
    assert trained_configurations() == []
    ended.refresh_from_db()
    assert (ended.status, ended.result) == ("failed", None)
