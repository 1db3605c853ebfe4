"""Training jobs end to end: set up in the admin, run by a real training worker on its own
queue, progress read back as the job page reads it, cancelled, and compared side by side."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from generation import services
from generation.models import Comparison, ModelConfig, TrainingJob, Worker
from generation.training import services as training
from generation.worker.training import _Progress, training_job_run
from tests.training.test_trainer import STYLE

pytestmark = pytest.mark.django_db(transaction=True)


def job_form(base, stories=(), **overrides):
    """The add form's fields; a `base` of None picks the fresh site's implicit default."""
    return {
        "name": "Lighthouse",
        "base": base.pk if base is not None else "",
        "stories": [s.pk for s in stories],
        "method": "lora",
        "steps": 30,
        "learning_rate": 0.01,
        "sequence_length": 32,
        "batch_size": 4,
        "time_limit_minutes": 10,
        "heldout_percent": 20,
        "eval_every": 10,
        "lora_rank": 8,
        "seed": 1,
        **overrides,
    }


def wait_for(read, done, timeout=120):
    deadline = time.monotonic() + timeout
    while not done(value := read()):
        assert time.monotonic() < deadline, value
        time.sleep(0.2)
    return value


def progress(client, job):
    return client.get(f"/staff/training/{job.pk}/data").json()


def test_a_job_set_up_in_the_admin_trains_in_the_worker_and_gives_a_model(admin_client, style_stories, training_worker):
    base = services.model_config_active_saved()
    upload = SimpleUploadedFile("more.txt", (STYLE * 10).encode(), content_type="text/plain")
    answer = admin_client.post(
        "/admin/generation/trainingjob/add/", {**job_form(base, style_stories), "files": [upload]}
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    job = TrainingJob.objects.get()
    assert job.files.get().name == "more.txt" and job.stories.count() == 3

    seen = []
    data = wait_for(lambda: seen.append(progress(admin_client, job)) or seen[-1], lambda d: d["status"] == "finished")
    # The job's page saw it move forward, never back.
    steps = [d["step"] for d in seen]
    assert steps == sorted(steps)
    assert [s for s, _ in data["losses"]] == list(range(1, 31))
    assert [e["step"] for e in data["evaluations"]] == [0, 10, 20, 30]
    assert data["perplexity_after"] < data["perplexity_before"]
    assert data["stop_reason"] == "steps" and data["examples"]["heldout"] >= 1

    job.refresh_from_db()
    result = job.result
    assert result.adapter == job.output_dir and result.source == base.source and not result.is_active
    assert (result.temperature, result.top_p) == (base.temperature, base.top_p)

    page = admin_client.get(f"/admin/generation/trainingjob/{job.pk}/change/").content.decode()
    assert 'id="chart-loss"' in page and "chart.umd.min.js" in page and "Activate the trained model" in page

    # Activated like any configuration.
    admin_client.post(f"/staff/training/{job.pk}/activate")
    assert ModelConfig.objects.get(is_active=True) == result

    # Side by side: the same prompt and seed, base and trained.
    answer = admin_client.post(
        "/staff/compare/",
        {
            "first": base.pk,
            "second": result.pk,
            "prompt": "The lighthouse keeper",
            "seed": 3,
            "max_new_tokens": 16,
            "temperature": 0.5,
        },
    )
    comparison = Comparison.objects.get()
    assert answer.status_code == 302 and answer["Location"] == f"/staff/compare/{comparison.pk}/"
    read = wait_for(
        lambda: admin_client.get(f"/staff/compare/{comparison.pk}/data").json(), lambda d: d["status"] == "finished"
    )
    assert read["first"] and read["second"] and read["first"] != read["second"]

    # The training worker, up for longer than a report takes (3 s), never loaded the
    # active model nor reported as a generation worker.
    assert not Worker.objects.filter(name__endswith=f":{training_worker.proc.pid}").exists()


@pytest.mark.usefixtures("training_worker")
def test_the_same_model_and_seed_side_by_side_write_the_same_text(admin_client):
    base = services.model_config_active_saved()
    form = {"first": base.pk, "second": base.pk, "prompt": "Once", "seed": 9, "max_new_tokens": 12, "temperature": 1}
    admin_client.post("/staff/compare/", form)
    comparison = Comparison.objects.get()
    read = wait_for(
        lambda: admin_client.get(f"/staff/compare/{comparison.pk}/data").json(), lambda d: d["status"] == "finished"
    )
    assert read["first"] == read["second"] and read["first"]


@pytest.mark.usefixtures("training_worker")
def test_cancel_stops_a_running_job_within_one_step_and_keeps_what_it_learned(admin_client, style_stories):
    base = services.model_config_active_saved()
    job = TrainingJob.objects.create(
        name="Long", base=base, steps=100_000, sequence_length=32, eval_every=1000, learning_rate=0.01
    )
    job.stories.set(style_stories)
    training.training_job_queue(job)
    wait_for(lambda: progress(admin_client, job), lambda d: d["step"] >= 3)
    answer = admin_client.post(f"/staff/training/{job.pk}/cancel")
    assert answer.status_code == 302
    asked = time.monotonic()
    data = wait_for(lambda: progress(admin_client, job), lambda d: d["status"] != "running", timeout=30)
    # The trainer asks before every step (tests/training/test_trainer.py pins "within one
    # step"); here the whole way round, worker and database, takes a moment, not the job.
    assert time.monotonic() - asked < 5
    assert data["status"] == "cancelled" and data["stop_reason"] == "cancelled" and data["step"] < 100_000
    job.refresh_from_db()
    assert job.result is not None and job.result.adapter == job.output_dir
    assert data["losses"][-1][0] == data["step"]  # its last step's loss was written before it stopped


def test_a_cancel_reaches_the_running_trainer_through_the_row(style_stories):
    base = services.model_config_active_saved()
    job = TrainingJob.objects.create(name="Running", base=base, status="running")
    progress = _Progress(job)
    assert not progress.should_stop()
    assert training.training_job_cancel(job)
    assert progress.should_stop()
    job.refresh_from_db()
    assert job.status == "running"  # the trainer ends it, keeping what it learned


def test_a_queued_job_cancelled_never_runs(admin_client, style_stories):
    base = services.model_config_active_saved()
    job = TrainingJob.objects.create(name="Queued", base=base)
    admin_client.post(f"/staff/training/{job.pk}/cancel")
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert training_job_run(job.pk) is None
    job.refresh_from_db()
    assert (job.status, job.step, job.started_at) == ("cancelled", 0, None)
