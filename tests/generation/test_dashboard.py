"""The staff dashboard's figures, computed from the generations' own times."""

from datetime import timedelta

import pytest
from django.utils import timezone

from generation import selectors
from generation.models import Generation, Worker
from storyteller.stories.services import story_create

pytestmark = pytest.mark.django_db


def _generation(story, now, created, started, finished, tokens=0, ttft=None, reason="", admitted=...):
    """A generation whose times are given in seconds before `now`; its engine admitted it
    when its worker took it unless `admitted` says otherwise."""

    def at(seconds):
        return None if seconds is None else now - timedelta(seconds=seconds)

    generation = Generation.objects.create(
        story=story,
        user=story.owner,
        seed=1,
        status="finished" if finished is not None else "running",
        finish_reason=reason or ("length" if finished is not None else ""),
        new_tokens=tokens,
        ttft_ms=ttft,
        started_at=at(started),
        admitted_at=at(started if admitted is ... else admitted),
        finished_at=at(finished),
    )
    Generation.objects.filter(pk=generation.pk).update(created_at=at(created))


def test_the_last_hour_minute_by_minute(alice):
    now = timezone.now().replace(second=0, microsecond=0)
    story = story_create(owner=alice, title="Whiskers", text="")
    # Two finished in the last minute: waited 1 s and 3 s, first tokens 200 and 400 ms.
    _generation(story, now, created=50, started=49, finished=20, tokens=60, ttft=200)
    _generation(story, now, created=40, started=37, finished=10, tokens=120, ttft=400)
    # Running for the last 90 s; waiting for a worker for the last 30 s; and one from
    # two hours ago, outside the window.
    _generation(story, now, created=95, started=90, finished=None)
    _generation(story, now, created=30, started=None, finished=None)
    # Taken by a worker 20 s ago, whose engine has had no free row for it since: it waits.
    _generation(story, now, created=25, started=20, admitted=None, finished=None)
    _generation(story, now, created=7300, started=7299, finished=7200, tokens=999, ttft=100)

    series = selectors.load_series("hour", now=now)["series"]
    assert len(series["ends"]) == 60
    assert series["generations_per_min"][-1] == 2 and series["generations_per_min"][-2] == 0
    assert series["tokens_per_s"][-1] == 3.0  # 180 tokens in 60 s
    assert (series["ttft_p50_ms"][-1], series["ttft_p95_ms"][-1]) == (1200, 3400)
    assert series["ttft_p50_ms"][-2] is None
    assert (series["queued"][-1], series["running"][-1]) == (2, 1)  # at the window's end
    assert (series["queued"][-2], series["running"][-2]) == (0, 1)  # a minute before
    assert sum(series["generations_per_min"]) == 2


def test_it_counts_the_generations_that_ended_in_an_error_per_minute(alice):
    now = timezone.now().replace(second=0, microsecond=0)
    story = story_create(owner=alice, title="Whiskers", text="")
    # In the last minute: two errors and one that ran to its length; three minutes ago,
    # one error; and one cancelled by its writer, which is not a failure.
    _generation(story, now, created=50, started=49, finished=40, reason="error")
    _generation(story, now, created=45, started=44, finished=30, reason="error")
    _generation(story, now, created=40, started=39, finished=20, tokens=60, ttft=200)
    _generation(story, now, created=200, started=199, finished=170, reason="error")
    _generation(story, now, created=100, started=99, finished=90, reason="cancelled")

    series = selectors.load_series("hour", now=now)["series"]
    assert series["errors_per_min"][-1] == 2 and series["errors_per_min"][-3] == 1
    assert sum(series["errors_per_min"]) == 3
    assert series["generations_per_min"][-1] == 3  # the errors still count as generations


def test_the_day_in_quarter_hours(alice):
    now = timezone.now()
    story = story_create(owner=alice, title="Whiskers", text="")
    _generation(story, now, created=7300, started=7299, finished=7200, tokens=900, ttft=100)
    series = selectors.load_series("day", now=now)["series"]
    assert len(series["ends"]) == 96
    assert sum(series["generations_per_min"]) == pytest.approx(1 / 15, abs=0.01)
    assert sum(series["tokens_per_s"]) == 1.0  # 900 tokens in a 900 s bucket


def test_only_staff_see_it(client, alice, admin_user):
    client.force_login(alice)
    assert client.get("/staff/dashboard/").status_code == 302  # to the admin's login
    assert client.get("/staff/dashboard/data").status_code == 302
    client.force_login(admin_user)
    page = client.get("/staff/dashboard/")
    assert page.status_code == 200 and b"chart.umd.min.js" in page.content
    data = client.get("/staff/dashboard/data?window=day").json()
    assert data["window"] == "day" and len(data["series"]["ends"]) == 96 and "workers" in data["now"]


def test_an_unknown_window_is_refused(admin_client):
    answer = admin_client.get("/staff/dashboard/data?window=week")
    assert answer.status_code == 400 and answer.json()["error"]["field"] == "window"


def test_it_shows_each_live_workers_kv_cache_and_hit_rate(admin_client):
    now = timezone.now()
    cache = {"held_tokens": 160, "cached_tokens": 12_800, "budget_tokens": 32_768}
    Worker.objects.create(
        name="host-a:11",
        state="ready",
        kv_cache={**cache, "prompt_tokens": 1000, "found_tokens": 640},
        last_heartbeat=now,
    )
    Worker.objects.create(
        name="host-b:12", state="ready", kv_cache={**cache, "prompt_tokens": 0, "found_tokens": 0}, last_heartbeat=now
    )
    Worker.objects.create(name="host-c:13", state="loading", last_heartbeat=now)  # no model yet
    Worker.objects.create(name="host-d:14", state="ready", kv_cache=cache, last_heartbeat=now - timedelta(hours=2))

    shown = admin_client.get("/staff/dashboard/data").json()["now"]["workers"]
    # Only this test's rows: a real worker of another test may be live beside them.
    workers = {w["name"]: w["kv_cache"] for w in shown if w["name"].startswith("host-")}
    assert workers == {
        "host-a:11": {**cache, "prompt_tokens": 1000, "found_tokens": 640, "hit_rate": 0.64},
        "host-b:12": {**cache, "prompt_tokens": 0, "found_tokens": 0, "hit_rate": None},  # nothing read yet
        "host-c:13": None,
    }
    page = admin_client.get("/staff/dashboard/").content.decode()
    assert "Each live worker's KV cache, in token positions" in page
