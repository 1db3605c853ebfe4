"""Activating another configuration switches every worker without a restart: what is in
flight finishes on the old model, new generations use the new one, and a model that
cannot load leaves the old one serving, with the error in the worker's status."""

import asyncio
import json
import time
from socket import gethostname

import pytest
from asgiref.sync import sync_to_async

from generation import services
from generation.models import Generation, ModelConfig, Worker
from storyteller.stories.services import story_create
from tests.generation.conftest import OPENING
from tests.sites import open_socket, receive, receive_past_reading, receive_queued

pytestmark = pytest.mark.django_db(transaction=True)


async def _worker_reports(site, condition, what, timeout=60) -> Worker:
    """The site's worker's row once it meets `condition` (other workers report too)."""
    name = f"{gethostname()}:{site.worker.proc.pid}:"  # then a mark of its own
    deadline = time.monotonic() + timeout
    while True:
        worker = await Worker.objects.filter(name__startswith=name).afirst()
        if worker is not None and condition(worker):
            return worker
        assert time.monotonic() < deadline, f"the worker never reported {what}; last: {worker and vars(worker)}"
        await asyncio.sleep(0.5)


async def _generate(site, user, story, params):
    socket = await open_socket(site, user, story)
    await socket.send(json.dumps({"type": "generate", "text": OPENING, "params": params}))
    return socket, await receive_queued(socket)


async def _until_done(socket, timeout=60):
    while (message := await receive(socket, timeout))["type"] != "done":
        assert message["type"] in ("queued", "reading", "token"), message
    return message


def _activate(name, source):
    return services.model_config_activate(ModelConfig(name=name, source=str(source)))


async def test_an_activated_model_takes_new_generations_while_the_old_one_finishes(
    site, alice, story, tiny_model_dir, slow_model_dir
):
    worker = await _worker_reports(site, lambda w: w.state == "ready", "a loaded model")
    assert worker.model_name == slow_model_dir.name
    in_flight, queued = await _generate(site, alice, story, {"max_new_tokens": 1024, "seed": 1})
    message = await receive_past_reading(in_flight)
    assert message["type"] == "token"

    await sync_to_async(_activate)("Tiny", tiny_model_dir)
    worker = await _worker_reports(site, lambda w: w.config_name == "Tiny", "the switch")
    assert (worker.model_name, worker.state, worker.error) == (tiny_model_dir.name, "ready", "")

    other = await sync_to_async(story_create)(owner=alice, title="Second", text=OPENING)
    after, _ = await _generate(site, alice, other, {"max_new_tokens": 20, "seed": 1})
    second = await _until_done(after)
    first = await _until_done(in_flight)
    await after.close()
    await in_flight.close()

    assert (first["finish_reason"], first["stats"]["new_tokens"]) == ("length", 1024)
    assert second["finish_reason"] in ("length", "eos")
    models = {g.pk: g.model_name async for g in Generation.objects.all()}
    assert models == {queued["generation_id"]: slow_model_dir.name, second["generation_id"]: tiny_model_dir.name}


async def test_a_model_that_cannot_load_leaves_the_old_one_serving(site, alice, story, tmp_path, slow_model_dir):
    await _worker_reports(site, lambda w: w.state == "ready", "a loaded model")
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    (broken / "model.safetensors").write_bytes(b"not weights")
    await sync_to_async(_activate)("Broken", broken)

    worker = await _worker_reports(site, lambda w: w.error, "the failed load")
    assert worker.error.startswith("Broken: ")
    assert (worker.state, worker.model_name, worker.loading) == ("ready", slow_model_dir.name, "")

    socket, queued = await _generate(site, alice, story, {"max_new_tokens": 10, "seed": 1})
    done = await _until_done(socket)
    await socket.close()
    assert done["finish_reason"] == "length"
    assert (await Generation.objects.aget(pk=queued["generation_id"])).model_name == slow_model_dir.name
