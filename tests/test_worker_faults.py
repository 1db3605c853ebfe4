"""Workers that die, with nobody watching: a generation whose worker is killed mid-story
ends by itself (no socket needs to be open), and generations that a dying worker had
taken but not started run on a live worker instead, once. Two real worker processes on
one queue, their own Redis and Daphne (tests/sites.py)."""

import asyncio
import json
import re
import socket
import time

import pytest
from asgiref.sync import sync_to_async

from engine.loader import packaged_gguf_path
from generation import services
from generation.models import Generation, ModelConfig, UsageLimit, Worker
from storyteller.stories.services import story_create
from tests.generation.conftest import OPENING
from tests.sites import Site, generate_over_http, open_socket, receive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_workers(slow_model_dir):
    site = Site(slow_model_dir)
    site.add_worker()
    yield site
    site.close()


async def _name(worker) -> str:
    """The name a worker process reports under (host:pid:mark), once it has reported."""
    prefix = f"{socket.gethostname()}:{worker.pid}:"

    async def reported():
        row = await Worker.objects.filter(name__startswith=prefix).afirst()
        return row.name if row else None

    return await _until(reported, f"worker {worker.pid} to report", timeout=30)


async def _names(workers) -> dict:
    return {await _name(worker): worker for worker in workers}


async def _until(condition, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while not (result := await condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.2)
    return result


async def _start(site, story, user, max_new_tokens) -> int:
    """A generation started over HTTP, with no socket to follow it; its id."""
    answer = await asyncio.to_thread(
        generate_over_http, site, user, story, {"max_new_tokens": max_new_tokens, "seed": 1}
    )
    return answer["generation_id"]


async def test_a_generation_whose_worker_is_killed_ends_with_no_socket_open(two_workers, alice):
    story = await sync_to_async(story_create)(owner=alice, title="Long", text=OPENING)
    generation = await _start(two_workers, story, alice, 1024)

    async def writing():
        row = await Generation.objects.aget(pk=generation)
        return row if row.status == "running" and len(row.output) > 20 else None

    running = await _until(writing, "the words to flow", timeout=60)
    workers = await _names([two_workers.worker, *two_workers.more_workers])
    workers.pop(running.worker).kill()
    killed_at = time.monotonic()

    async def ended():
        row = await Generation.objects.aget(pk=generation)
        return row if row.status == "finished" else None

    # No socket follows it: the other worker's sweep ends it, keeping its text.
    row = await _until(ended, "the lost generation to end", timeout=30)
    assert time.monotonic() - killed_at < 20
    assert (row.finish_reason, row.error_code) == ("error", "unavailable")
    assert row.output.startswith(running.output) and "worker stopped" in row.error_message

    # The other worker goes on serving the writer.
    other = await sync_to_async(story_create)(owner=alice, title="Next", text=OPENING)
    after = await _start(two_workers, other, alice, 30)
    row = await _until(lambda: _finished(after), "a new generation on the live worker", timeout=60)
    assert (row.finish_reason, row.worker) == ("length", next(iter(workers)))


async def _finished(pk):
    row = await Generation.objects.aget(pk=pk)
    return row if row.status == "finished" else None


async def test_generations_taken_by_a_worker_that_dies_while_loading_run_on_another_once(site, alice, tmp_path):
    await UsageLimit.objects.acreate(user=alice, concurrent_generations=5)
    # The only worker is one that is slow to get ready: it converts the packaged GGUF model
    # into an empty models folder first (about 15 s here), and takes tasks meanwhile.
    site.worker.stop()
    loading = site.add_worker(
        env={"STORYTELLER_DEFAULT_MODEL": str(packaged_gguf_path()), "STORYTELLER_MODELS_DIR": str(tmp_path)},
        ready=r"Converting",
    )
    stories = [await sync_to_async(story_create)(owner=alice, title=f"Story {n}", text=OPENING) for n in range(3)]
    watched = await open_socket(site, alice, stories[0])
    await watched.send(
        json.dumps(
            {"type": "generate", "request_id": "w", "text": OPENING, "params": {"max_new_tokens": 40, "seed": 1}}
        )
    )
    queued = await receive(watched)
    ids = [queued["generation_id"], *[await _start(site, story, alice, 40) for story in stories[1:]]]

    loading_name = await _name(loading)

    async def all_taken_by_the_loading_worker():
        return await Generation.objects.filter(pk__in=ids, worker=loading_name).acount() == len(ids)

    await _until(all_taken_by_the_loading_worker, "the loading worker to take the generations", timeout=30)
    loading.kill()
    killed_at = time.monotonic()
    # Its tasks went with it (a task is acknowledged when a worker takes it). A live worker
    # finds the generations it left and runs them.
    live = site.add_worker()

    # The writer who watches hears nothing wrong: its place in the queue, then the words.
    messages = []
    while (message := await receive(watched, timeout=60))["type"] != "done":
        messages.append(message)
    first_word = next(i for i, m in enumerate(messages) if m["type"] == "token")
    assert {m["type"] for m in messages[:first_word]} <= {"queued", "reading"} and first_word >= 1
    assert message["finish_reason"] == "length" and time.monotonic() - killed_at < 45
    assert "".join(m["text"] for m in messages if m["type"] == "token") == message["text"]
    await watched.close()

    # Each ran once, on the live worker, to its full length.
    live_name = await _name(live)
    for pk in ids:
        row = await _until(lambda pk=pk: _finished(pk), f"generation {pk} to end", timeout=60)
        assert (row.finish_reason, row.new_tokens, row.worker) == ("length", 40, live_name)
    put_back = re.findall(r"Put (\d+) generation\(s\) of a gone worker back in the queue", live.output())
    assert sum(map(int, put_back)) == 3


async def test_two_workers_share_the_queue_both_follow_a_switch_and_survive_each_other(
    two_workers, alice, slow_model_dir
):
    site = two_workers
    workers = await _names([site.worker, *site.more_workers])
    await UsageLimit.objects.acreate(user=alice, concurrent_generations=10)
    stories = [await sync_to_async(story_create)(owner=alice, title=f"Story {n}", text=OPENING) for n in range(8)]
    ids = await asyncio.gather(*(_start(site, story, alice, 600) for story in stories))

    # Both take generations from the one queue.
    async def taken_by_both():
        taken = {g.worker async for g in Generation.objects.filter(pk__in=ids).exclude(worker="")}
        return taken == set(workers)

    await _until(taken_by_both, "both workers to take generations", timeout=60)

    # A live switch reaches both, while the engines before it finish what they write: the
    # same model with other engine limits, a new engine (the generations stay long enough).
    switched_to = ModelConfig(name="Eight rows", source=str(slow_model_dir), max_batch_size=8)
    await sync_to_async(services.model_config_activate)(switched_to)

    async def both_switched():
        return await Worker.objects.filter(name__in=workers, config_name="Eight rows", state="ready").acount() == 2

    await _until(both_switched, "the switch to reach both workers", timeout=60)

    # One is killed mid-story: its generations end as lost, the other's run to the end.
    running = await _until(
        lambda: Generation.objects.filter(pk__in=ids, status="running").exclude(output="").afirst(),
        "a generation to be writing",
        timeout=60,
    )
    killed, survivor = running.worker, next(name for name in workers if name != running.worker)
    workers[killed].kill()
    for pk in ids:
        row = await _until(lambda pk=pk: _finished(pk), f"generation {pk} to end", timeout=120)
        if row.worker == killed:
            assert (row.finish_reason, row.error_code) == ("error", "unavailable")
        else:
            assert (row.worker, row.finish_reason, row.new_tokens) == (survivor, "length", 600), row.error_message

    # The worker left goes on serving, with the configuration switched to.
    after = await _start(site, await sync_to_async(story_create)(owner=alice, title="After", text=OPENING), alice, 20)
    row = await _until(lambda: _finished(after), "a generation after the kill", timeout=60)
    assert (row.worker, row.finish_reason) == (survivor, "length")
    assert await Worker.objects.filter(name=survivor, config_name="Eight rows").aexists()
