"""While a generation waits, its writer sees its place in the queue move, and 0 only once
it runs: whether it waits for a worker, or on a worker whose engine has no free row."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from generation import services
from generation.models import Generation, ModelConfig, UsageLimit
from storyteller.stories.services import story_create
from tests.generation.conftest import OPENING
from tests.sites import Site, open_socket, receive_past_reading

pytestmark = pytest.mark.django_db(transaction=True)

WRITERS = 4


@pytest.fixture
def one_at_a_time(slow_model_dir):
    """A site whose worker runs one generation at a time, so that others queue."""
    site = Site(slow_model_dir, concurrency=1)
    yield site
    site.close()


@pytest.fixture
def one_row(slow_model_dir):
    """A site whose worker takes many generations at once, but whose engine decodes one:
    the others wait on the worker, taken but not running."""
    services.model_config_activate(ModelConfig(name="One row", source=str(slow_model_dir), max_batch_size=1))
    site = Site(slow_model_dir, concurrency=WRITERS)
    yield site
    site.close()


async def _generate_in_turn(site, alice) -> list:
    """Each of WRITERS stories asks for 400 tokens, one after the other: seconds each, longer
    than a socket takes to check its place (consumers.WATCH_EVERY_S)."""
    await UsageLimit.objects.acreate(user=alice, concurrent_generations=WRITERS)
    sockets = []
    for n in range(WRITERS):
        story = await sync_to_async(story_create)(owner=alice, title=f"Story {n}", text=OPENING)
        socket = await open_socket(site, alice, story)
        await socket.send(
            json.dumps({"type": "generate", "request_id": f"r{n}", "text": OPENING, "params": {"max_new_tokens": 400}})
        )
        sockets.append(socket)
    return sockets


async def _positions_until_words(socket, request_id) -> list[int]:
    positions = []
    while (message := await receive_past_reading(socket, timeout=120))["type"] == "queued":
        assert message["request_id"] == request_id
        positions.append(message["position"])
    assert message["type"] == "token"
    return positions


def _moved_forward_to_zero(positions: list[int]) -> None:
    # It waited behind others, heard about each step forward and never a step backward,
    # and heard 0 once, last, just before its words.
    assert positions[0] >= 2 and positions[-1] == 0 and len(positions) >= 3
    assert positions == sorted(positions, reverse=True) and len(set(positions)) == len(positions)


async def test_a_waiting_generation_gets_its_new_place_as_the_queue_moves(one_at_a_time, alice):
    sockets = await _generate_in_turn(one_at_a_time, alice)
    _moved_forward_to_zero(await _positions_until_words(sockets[-1], f"r{WRITERS - 1}"))
    await asyncio.gather(*(socket.close() for socket in sockets))


async def test_on_a_full_engine_a_taken_generation_still_waits_in_line(one_row, alice):
    sockets = await _generate_in_turn(one_row, alice)
    # The worker takes them all at once; its engine runs one of them.
    deadline = asyncio.get_running_loop().time() + 60

    async def counts():
        running = Generation.objects.filter(status="running")
        return await running.filter(admitted_at__isnull=True).acount(), await running.exclude(admitted_at=None).acount()

    while await counts() != (WRITERS - 1, 1):
        assert asyncio.get_running_loop().time() < deadline, f"taken but waiting, running: {await counts()}"
        await asyncio.sleep(0.05)
    # The next in line hears that it waits, then that it runs, then its words.
    second = await _positions_until_words(sockets[1], "r1")
    assert second[-1] == 0 and len(second) >= 2 and all(position >= 1 for position in second[:-1])
    _moved_forward_to_zero(await _positions_until_words(sockets[-1], f"r{WRITERS - 1}"))
    await asyncio.gather(*(socket.close() for socket in sockets))
