"""A writer's limits hold against requests made at the same moment, on different stories:
the generations at once, and the tokens for 24 hours, which count what queued and running
generations may still write. On SQLite and on PostgreSQL (make test runs both)."""

import threading

import pytest
from django.db import connection

from generation import queue, services
from generation.models import Generation, UsageLimit
from storyteller.stories.services import story_create
from tests.generation.conftest import OPENING

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def nothing_runs(monkeypatch):
    """The generations stay queued: a worker of the session, if one runs, never gets them."""
    monkeypatch.setattr(queue, "enqueue_on_commit", lambda *args: None)


def _all_at_once(user, stories, max_new_tokens) -> list[str]:
    """generation_start for every story, each in a thread of its own (with its own database
    connection), released together; what each got: "queued" or the refusal's code."""
    barrier = threading.Barrier(len(stories))
    answers = []

    def ask(story):
        barrier.wait()
        try:
            services.generation_start(story=story, user=user, text=OPENING, params={"max_new_tokens": max_new_tokens})
            answers.append("queued")
        except services.GenerationRefused as refused:
            # The per-minute rate limit answers "limit" too: told apart, so that it fails the test.
            answers.append("rate" if "in a minute" in refused.message else refused.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(story,)) for story in stories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(answers)


def test_generations_at_once_hold_across_stories_asked_together(alice):
    UsageLimit.objects.create(concurrent_generations=2, tokens_per_day=None)
    stories = [story_create(owner=alice, title=f"Story {n}", text=OPENING) for n in range(6)]
    # Three rounds of six: well under the 30 generate requests a minute a writer may make.
    for round_ in range(3):
        assert _all_at_once(alice, stories, 20) == ["limit"] * 4 + ["queued"] * 2, f"round {round_}"
        assert Generation.objects.filter(user=alice, status__in=Generation.ACTIVE).count() == 2
        Generation.objects.filter(user=alice).update(status="finished", finish_reason="length")


def test_the_daily_tokens_count_what_queued_generations_may_still_write(alice):
    UsageLimit.objects.create(concurrent_generations=None, tokens_per_day=1000)
    stories = [story_create(owner=alice, title=f"Story {n}", text=OPENING) for n in range(5)]
    # Three of 300 fit in 1,000; a fourth would make 1,200.
    assert _all_at_once(alice, stories, 300) == ["limit"] * 2 + ["queued"] * 3
    waiting = Generation.objects.filter(user=alice, status="queued")
    assert sum(g.params["max_new_tokens"] for g in waiting) == 900


def test_a_refusal_says_how_many_tokens_running_generations_hold(alice):
    UsageLimit.objects.create(concurrent_generations=None, tokens_per_day=1000)
    first, second = (story_create(owner=alice, title=f"Story {n}", text=OPENING) for n in range(2))
    services.generation_start(story=first, user=alice, text=OPENING, params={"max_new_tokens": 800})
    with pytest.raises(services.GenerationRefused) as refused:
        services.generation_start(story=second, user=alice, text=OPENING, params={"max_new_tokens": 300})
    assert refused.value.message == (
        "You have 200 of your 1,000 tokens for 24 hours left (800 are held by continuations being written), "
        "and this asks for 300. Ask for fewer, or wait: tokens come back 24 hours after they were used, and "
        "what a continuation does not write comes back when it ends."
    )
