"""/healthz: what a load balancer and an operator's monitor read. States only, never what an
error said; 503 whenever the site cannot write for a writer."""

import json
import time
import urllib.error
import urllib.request

import pytest
from django.utils import timezone

from generation import realtime
from generation.models import Worker
from tests.harness.redis import RedisServer
from tests.sites import Site

pytestmark = pytest.mark.django_db


def _healthz_until(get, until, timeout=30):
    """/healthz read every half second until `until(answer)`, as a monitor would: a worker
    reports its state every few seconds (supervisor.REPORT_EVERY_S)."""
    deadline = time.monotonic() + timeout
    while not until(answer := get()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return answer


def test_it_is_healthy_with_a_worker_running(client, celery_worker, tiny_model_dir):
    response = _healthz_until(lambda: client.get("/healthz"), lambda answer: answer.status_code == 200)
    assert response.status_code == 200
    body = response.json()
    assert (body["database"], body["redis"], body["workers"], body["model"]) == ("ok", "ok", "ok: 1", "Default")
    # (Its live requests are whatever other tests of this process left it writing.)
    [worker] = body["worker_states"]
    assert (worker["state"], worker["model"]) == ("ready", tiny_model_dir.name) and worker["live_requests"] >= 0


@pytest.fixture
def own_redis(settings):
    """A Redis of the site's own, which no worker reports to."""
    server = RedisServer().start()
    settings.REDIS_URL = server.url
    realtime.redis_client.cache_clear()
    yield server
    server.remove()
    realtime.redis_client.cache_clear()


@pytest.fixture
def stopped_redis(own_redis):
    """The site's Redis, running at first, then stopped."""
    assert realtime.redis_client().ping()
    own_redis.stop()
    return own_redis


def test_it_answers_503_naming_redis_when_redis_stops(client, stopped_redis):
    # A worker that reported to the database a moment ago: its Redis heartbeat is out of reach.
    Worker.objects.create(name="host-a:1", state="ready", model_name="SmolLM2", last_heartbeat=timezone.now())

    response = client.get("/healthz")

    body = response.json()
    assert response.status_code == 503
    assert (body["redis"], body["database"]) == ("down", "ok") and body["workers"].startswith("ok: ")
    # (The worker of the other tests may be in the list too: it reports to the same database.)
    assert {"state": "ready", "model": "SmolLM2", "live_requests": 0} in body["worker_states"]
    # What went wrong stays in the log: no socket path, no exception text, no host name.
    text = response.content.decode()
    assert str(stopped_redis.socket) not in text and "Error" not in text and "host-a" not in text


def test_it_answers_503_when_no_worker_is_alive(client, own_redis):
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503 and (body["redis"], body["database"]) == ("ok", "ok")
    assert body["workers"] == f"down: no worker heartbeat in the last {realtime.WORKER_ALIVE_S} s"
    assert body["worker_states"] == []


@pytest.fixture
def site_whose_model_cannot_load(tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    site = Site(broken, worker_ready=r"Could not load")
    yield site
    site.close()


@pytest.mark.django_db(transaction=True)
def test_it_answers_503_when_every_worker_failed_to_load_its_model(site_whose_model_cannot_load):
    def get():
        try:
            with urllib.request.urlopen(site_whose_model_cannot_load.url + "/healthz", timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as answer:
            return answer.code, json.loads(answer.read())

    def reported_the_failure(answer):
        return [worker["state"] for worker in answer[1]["worker_states"]] == ["error"]

    status, body = _healthz_until(get, reported_the_failure)
    assert status == 503
    assert (body["database"], body["redis"], body["model"]) == ("ok", "ok", "Default")
    assert body["workers"] == "down: no worker could load the model"
    assert body["worker_states"] == [{"state": "error", "model": "", "live_requests": 0}]
    # The worker's error is for the staff dashboard, not for anyone who asks.
    failed = Worker.objects.get(state="error")
    assert failed.error.startswith("Default: ") and "broken-model holds no weights" in failed.error
    assert "broken-model" not in json.dumps(body) and "weights" not in json.dumps(body)
