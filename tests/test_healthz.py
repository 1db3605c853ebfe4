import pytest

from generation import realtime

pytestmark = pytest.mark.django_db


def test_it_is_healthy_with_a_worker_running(client, celery_worker):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok" and body["redis"] == "ok"
    assert body["workers"] == "ok: 1"
    assert body["model"] == "Default"


def test_it_answers_503_naming_redis_when_redis_is_down(client, settings, tmp_path):
    settings.REDIS_URL = f"unix://{tmp_path}/nothing-here.sock"
    realtime.redis_client.cache_clear()
    try:
        response = client.get("/healthz")
    finally:
        realtime.redis_client.cache_clear()
    assert response.status_code == 503
    assert response.json()["redis"].startswith("down")
    assert response.json()["database"] == "ok"
