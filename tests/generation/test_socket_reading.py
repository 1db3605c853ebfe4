"""While a long story's prompt is read, the socket says how far, before the first word.

A site of its own whose worker reads a prompt in pieces of 16 tokens, with the slow model,
whose 2,048-token window holds a long prompt that takes it a second or more to read here.
Each test writes another story: the worker keeps what it read, and a story it read once
would be found in its cache and not read again.
"""

import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from generation import realtime
from generation.management.prose import join, story_sentences
from generation.models import Generation
from storyteller.stories.services import story_create
from tests.generation.conftest import socket_for
from tests.sites import Site, open_socket, receive, receive_queued

pytestmark = pytest.mark.django_db(transaction=True)

# The engine's own pieces are sized by time, 2,048 tokens at most: far more than the whole
# prompt here. Pieces this small make reading it take many passes, each reported.
READ_IN_PIECES = {"STORYTELLER_MAX_PREFILL_TOKENS": "16"}


@pytest.fixture(scope="module")
def reading_site(django_db_setup, django_db_blocker, slow_model_dir):
    site = Site(slow_model_dir, env=READ_IN_PIECES)
    yield site
    site.close()


def a_long_story(alice, number: int):
    """Alice's story of about 2,500 words: far more than the model's window, which the
    prompt fills to about three quarters."""
    return story_create(owner=alice, title="The harbour", text=join(story_sentences(number, 200)))


async def send(socket, message: dict) -> None:
    await socket.send(json.dumps(message))


async def until_done(socket, seen: list[tuple[float, dict]]) -> None:
    while not seen or seen[-1][1]["type"] != "done":
        seen.append((time.monotonic(), await receive(socket, timeout=60)))


async def test_a_long_prompt_is_reported_as_it_is_read_and_then_the_words_come(reading_site, alice):
    story = await database_sync_to_async(a_long_story)(alice, 1)
    socket = await open_socket(reading_site, alice, story)
    asked = time.monotonic()
    await send(socket, {"type": "generate", "text": story.text, "params": {"max_new_tokens": 20, "seed": 1}})
    seen: list[tuple[float, dict]] = []
    await until_done(socket, seen)
    await socket.close()

    messages = [message for _, message in seen]
    types = [message["type"] for message in messages]
    done = messages[-1]
    readings = [message for message in messages if message["type"] == "reading"]
    assert types[0] == "queued" and done["finish_reason"] == "length"
    assert done["stats"]["prompt_tokens"] > 1000
    # Several reports, each further on, of the whole prompt, and all before the first word.
    assert len(readings) >= 3, types
    assert [r["done"] for r in readings] == sorted({r["done"] for r in readings})
    assert all(r["total"] == done["stats"]["prompt_tokens"] and r["done"] < r["total"] for r in readings)
    assert all(r["generation_id"] == done["generation_id"] for r in readings)
    first_token = types.index("token")
    assert "reading" not in types[first_token:]
    assert types.index("reading") < first_token
    # A few a second at most: the reports come no faster than every quarter second.
    read_for = seen[first_token][0] - asked
    assert len(readings) <= read_for / 0.25 + 2, (len(readings), read_for)
    # The words are numbered from 0 as ever; the reports are not part of them, nor saved.
    tokens = [message for message in messages if message["type"] == "token"]
    assert [t["seq"] for t in tokens] == list(range(len(tokens)))
    assert "".join(t["text"] for t in tokens) == done["text"]
    generation = await Generation.objects.aget(pk=done["generation_id"])
    assert generation.output == done["text"] and generation.prompt_tokens == done["stats"]["prompt_tokens"]


async def test_a_socket_that_follows_it_mid_reading_is_told_how_far_at_once(reading_site, alice):
    story = await database_sync_to_async(a_long_story)(alice, 2)
    first = await open_socket(reading_site, alice, story)
    await send(first, {"type": "generate", "text": story.text, "params": {"max_new_tokens": 20, "seed": 2}})
    queued = await receive_queued(first)
    reported = await receive(first, timeout=60)
    assert reported["type"] == "reading"
    await first.close()  # the writer's connection drops while the prompt is read

    again = await open_socket(reading_site, alice, story)
    await send(again, {"type": "resume", "generation_id": queued["generation_id"], "after_seq": -1})
    seen: list[tuple[float, dict]] = []
    await until_done(again, seen)
    await again.close()

    messages = [message for _, message in seen]
    types = [message["type"] for message in messages]
    # That it runs, then the latest report (the prompt was further on by then), never an
    # older one, and every word after it from seq 0.
    assert messages[0] == {**queued, "position": 0}, messages[:2]
    assert messages[1]["type"] == "reading" and messages[1]["done"] >= reported["done"], messages[:2]
    readings = [message["done"] for message in messages if message["type"] == "reading"]
    assert readings == sorted(set(readings))
    assert "reading" not in types[types.index("token") :]
    tokens = [message for message in messages if message["type"] == "token"]
    assert [t["seq"] for t in tokens] == list(range(len(tokens)))
    assert "".join(t["text"] for t in tokens) == messages[-1]["text"] and tokens


async def test_stop_while_the_prompt_is_read_ends_it_with_no_words(reading_site, alice):
    story = await database_sync_to_async(a_long_story)(alice, 3)
    socket = await open_socket(reading_site, alice, story)
    await send(socket, {"type": "generate", "text": story.text, "params": {"max_new_tokens": 20, "seed": 3}})
    queued = await receive_queued(socket)
    assert (await receive(socket, timeout=60))["type"] == "reading"
    await send(socket, {"type": "cancel", "generation_id": queued["generation_id"]})
    seen: list[tuple[float, dict]] = []
    await until_done(socket, seen)
    await socket.close()

    done = seen[-1][1]
    assert done["finish_reason"] == "cancelled" and done["text"] == ""
    assert "token" not in [message["type"] for _, message in seen]
    generation = await Generation.objects.aget(pk=queued["generation_id"])
    assert (generation.finish_reason, generation.output, generation.new_tokens) == ("cancelled", "", 0)


async def test_a_socket_that_follows_late_gets_the_latest_report_and_none_once_words_flow(alice, story):
    generation = await Generation.objects.acreate(story=story, user=alice, seed=1, status="running")
    stream = realtime.Stream(generation.id)
    report = sync_to_async(stream.report, thread_sensitive=False)

    def reading(done):
        return {"type": "reading", "generation_id": generation.id, "done": done, "total": 480}

    await report(reading(96))
    await report(reading(192))
    socket = await socket_for(alice, story.id)
    await socket.connect()
    try:
        await socket.send_json_to({"type": "resume", "generation_id": generation.id, "after_seq": -1})
        assert await socket.receive_json_from(timeout=5) == reading(192)
        assert await socket.receive_nothing(timeout=0.5)
        await report(reading(288))
        assert await socket.receive_json_from(timeout=5) == reading(288)

        await sync_to_async(stream.publish, thread_sensitive=False)(
            {"type": "token", "generation_id": generation.id, "seq": 0, "text": " Once"}
        )
        assert (await socket.receive_json_from(timeout=5))["type"] == "token"
        await report(reading(384))  # late, behind the first word: the writer is past it
        assert await socket.receive_nothing(timeout=0.5)
    finally:
        await socket.disconnect()

    # Once the log has words, a socket that follows anew gets those, and no report.
    again = await socket_for(alice, story.id)
    await again.connect()
    try:
        await again.send_json_to({"type": "resume", "generation_id": generation.id, "after_seq": -1})
        assert (await again.receive_json_from(timeout=5))["type"] == "token"
        assert await again.receive_nothing(timeout=0.5)
    finally:
        await again.disconnect()
