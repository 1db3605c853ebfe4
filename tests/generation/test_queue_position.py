"""While a generation waits for a worker, its writer sees its place in the queue move."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from generation.models import UsageLimit
from storyteller.stories.services import story_create
from tests.generation.conftest import OPENING
from tests.sites import Site, open_socket, receive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def one_at_a_time(slow_model_dir):
    """A site whose worker runs one generation at a time, so that others queue."""
    site = Site(slow_model_dir, concurrency=1)
    yield site
    site.close()


async def test_a_waiting_generation_gets_its_new_place_as_the_queue_moves(one_at_a_time, alice):
    await UsageLimit.objects.acreate(user=alice, concurrent_generations=4)
    sockets = []
    for n in range(4):
        story = await sync_to_async(story_create)(owner=alice, title=f"Story {n}", text=OPENING)
        socket = await open_socket(one_at_a_time, alice, story)
        await socket.send(
            json.dumps({"type": "generate", "request_id": f"r{n}", "text": OPENING, "params": {"max_new_tokens": 200}})
        )
        sockets.append(socket)
    last = sockets[-1]
    positions = []
    while (message := await receive(last, timeout=120))["type"] == "queued":
        assert message["request_id"] == "r3"
        positions.append(message["position"])
    assert message["type"] == "token"
    # It waited behind others, and heard about each step forward, never backward.
    assert positions[0] >= 1 and len(positions) >= 2
    assert positions == sorted(positions, reverse=True) and len(set(positions)) == len(positions)
    await asyncio.gather(*(socket.close() for socket in sockets))
