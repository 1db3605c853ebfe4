"""Per-writer limits, with a site default: going over gets error `limit` with a clear
message, and costs no model time (no generation is even recorded)."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from generation.models import Generation, UsageLimit
from storyteller.stories.services import story_create
from tests.generation.conftest import OPENING, socket_for

pytestmark = pytest.mark.django_db(transaction=True)


async def _ask(user, story, max_new_tokens):
    socket = await socket_for(user, story.id)
    await socket.connect()
    await socket.send_json_to({"type": "generate", "text": OPENING, "params": {"max_new_tokens": max_new_tokens}})
    answer = await socket.receive_json_from(timeout=10)
    await socket.disconnect()
    return answer


async def _refused(user, story, max_new_tokens) -> str:
    before = await Generation.objects.acount()
    answer = await _ask(user, story, max_new_tokens)
    assert (answer["type"], answer["code"]) == ("error", "limit"), answer
    assert await Generation.objects.acount() == before
    return answer["message"]


async def test_a_writers_own_limit_on_tokens_per_request(alice, bob, story):
    await UsageLimit.objects.acreate(user=alice, max_new_tokens=40)
    message = await _refused(alice, story, 41)
    assert message.startswith("You may ask for at most 40 new tokens at a time; this asks for 41.")
    assert (await _ask(alice, story, 40))["type"] == "queued"
    bobs = await database_sync_to_async(story_create)(owner=bob, title="Bob's", text=OPENING)
    assert (await _ask(bob, bobs, 41))["type"] == "queued"  # bob has no such limit


async def test_the_site_default_limits_generations_at_once_across_stories(alice, story):
    await UsageLimit.objects.acreate(concurrent_generations=2)
    for n in range(2):
        other = await database_sync_to_async(story_create)(owner=alice, title=f"Other {n}", text=OPENING)
        await Generation.objects.acreate(story=other, user=alice, seed=1, status="running")
    message = await _refused(alice, story, 10)
    assert "You have 2 continuations being written, your limit" in message


async def test_tokens_per_day_count_the_last_24_hours(alice, story):
    await UsageLimit.objects.acreate(tokens_per_day=1000)
    await UsageLimit.objects.acreate(user=alice)  # her own row leaves it to the default
    used = await Generation.objects.acreate(story=story, user=alice, seed=1, status="finished", new_tokens=950)
    old = await Generation.objects.acreate(story=story, user=alice, seed=1, status="finished", new_tokens=5000)
    await Generation.objects.filter(pk=old.pk).aupdate(created_at=timezone.now() - timedelta(hours=25))

    message = await _refused(alice, story, 60)
    assert "You have 50 of your 1,000 tokens for 24 hours left, and this asks for 60" in message
    assert (await _ask(alice, story, 50))["type"] == "queued"

    await Generation.objects.filter(pk=used.pk).aupdate(new_tokens=1000)
    other = await database_sync_to_async(story_create)(owner=alice, title="Other", text=OPENING)
    assert "You have 0 of your 1,000 tokens" in await _refused(alice, other, 1)
