"""Faults caused on purpose: a worker killed mid-story and Redis restarted mid-stream, on a
site of its own (its own Redis, worker and Daphne), driven over real websockets."""

import asyncio
import json
import time

import pytest
import websockets

from generation.models import Generation
from tests.generation.conftest import OPENING
from tests.harness.processes import start_worker
from tests.sites import open_socket, receive, receive_past_reading, receive_queued

pytestmark = pytest.mark.django_db(transaction=True)

# Enough tokens of the slow model to take several seconds (about 15 to 25 s on a 2-core
# machine), so that a fault lands mid-story; not so many that the story outlasts the
# test's patience on a busy machine (1,024 took over 80 s there, most of a 90 s deadline).
LONG = {"max_new_tokens": 400, "seed": 1}


async def test_a_killed_worker_is_reported_within_15_s_and_nothing_is_lost_or_run_twice(site, alice, story):
    socket = await open_socket(site, alice, story)
    await socket.send(json.dumps({"type": "generate", "text": OPENING, "params": LONG}))
    queued = await receive_queued(socket)
    arrivals = []  # (when, text) of every token
    while not arrivals or time.monotonic() - arrivals[0][0] < 3:
        message = await receive_past_reading(socket)
        assert message["type"] == "token", message
        arrivals.append((time.monotonic(), message["text"]))

    site.worker.kill()
    killed_at = time.monotonic()
    while (message := await receive(socket, timeout=20))["type"] == "token":
        arrivals.append((time.monotonic(), message["text"]))
    told_after = time.monotonic() - killed_at
    done = await receive(socket)
    await socket.close()

    assert message["type"] == "error" and message["code"] == "unavailable"
    assert "worker stopped" in message["message"]
    assert told_after < 15
    assert done["type"] == "done" and done["finish_reason"] == "error"
    generation = await Generation.objects.aget(pk=queued["generation_id"])
    assert (generation.status, generation.finish_reason) == ("finished", "error")
    assert generation.output == done["text"]
    # Saved up to the last second: everything the writer saw more than a second and a
    # half before the kill (a flush and some slack) is on the row.
    streamed = "".join(text for _, text in arrivals)
    seen_before = "".join(text for when, text in arrivals if when < killed_at - 1.5)
    assert seen_before and streamed.startswith(generation.output) and generation.output.startswith(seen_before)
    # The draft is the writer's: the generation did not touch it.
    await story.arefresh_from_db()
    assert (story.text, story.revision) == (OPENING, 1)

    # A new worker, even handed the same task again, does not run it a second time.
    site.worker = await asyncio.to_thread(start_worker, site.env)
    from generation.tasks import generate_task

    await asyncio.to_thread(_send_task_again, site.env["REDIS_URL"], generate_task, generation.id)
    await _wait_for(lambda: "succeeded" in site.worker.output(), "the new worker to take the task")
    again = await Generation.objects.aget(pk=generation.id)
    assert (again.output, again.new_tokens, again.finished_at) == (
        generation.output,
        generation.new_tokens,
        generation.finished_at,
    )


def _send_task_again(redis_url, task, generation_id):
    from storyteller import redis_urls

    with task.app.connection_for_write(redis_urls.celery_broker_url(redis_url)) as connection:
        task.apply_async((generation_id,), connection=connection)


async def _wait_for(condition, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_the_site_recovers_by_itself_when_redis_restarts_mid_stream(site, alice, story):
    socket = await open_socket(site, alice, story)
    await socket.send(json.dumps({"type": "generate", "text": OPENING, "params": LONG}))
    queued = await receive_queued(socket)
    tokens = []
    while len(tokens) < 5:
        message = await receive_past_reading(socket)
        assert message["type"] == "token", message
        tokens.append(message)

    site.redis.stop()
    await asyncio.sleep(1)
    site.redis.start()

    # The socket may or may not survive; either way the writer follows the story again
    # with `resume` and gets every token, in order, then `done`.
    done = None
    deadline = time.monotonic() + 90
    while done is None:
        assert time.monotonic() < deadline, "the generation never finished"
        try:
            message = await receive(socket, timeout=30)
        except (websockets.ConnectionClosed, TimeoutError):
            await asyncio.sleep(1)
            try:
                socket = await open_socket(site, alice, story)
            except (OSError, websockets.InvalidStatus):
                continue
            await socket.send(
                json.dumps({"type": "resume", "generation_id": queued["generation_id"], "after_seq": tokens[-1]["seq"]})
            )
            continue
        if message["type"] == "token":
            assert message["seq"] == tokens[-1]["seq"] + 1, "a token was lost or came out of order"
            tokens.append(message)
        elif message["type"] == "done":
            done = message
        else:
            raise AssertionError(f"unexpected {message}")
    assert "".join(m["text"] for m in tokens) == done["text"]
    assert done["finish_reason"] == "length"
    generation = await Generation.objects.aget(pk=queued["generation_id"])
    assert generation.output == done["text"]

    # A new generation works, with no process restarted.
    await socket.send(json.dumps({"type": "generate", "text": OPENING, "params": {"max_new_tokens": 20}}))
    while (message := await receive(socket, timeout=60))["type"] != "done":
        assert message["type"] in ("queued", "reading", "token"), message
    assert message["finish_reason"] == "length"
    await socket.close()
