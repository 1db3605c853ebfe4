"""A site of its own for tests that break things: its own Redis, worker and Daphne on the
test database, driven over real websockets."""

import asyncio
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.cookies import SimpleCookie

import pytest
import websockets
from channels.db import database_sync_to_async

from tests.generation.conftest import queued_until_running, session_headers
from tests.harness.models import SLOW, shared_tiny_model
from tests.harness.processes import start_web, start_worker, subprocess_env
from tests.harness.redis import RedisServer


@pytest.fixture(scope="session")
def slow_model_dir(shared_models_dir):
    """A model that writes about a hundred tokens a second here and never ends early."""
    return shared_tiny_model(shared_models_dir / "slow-model", **SLOW)


class Site:
    def __init__(self, model_dir, concurrency: int = 4, env: dict | None = None, worker_ready: str = r"Loaded model"):
        self.redis = RedisServer().start()
        self.env = {
            **subprocess_env(),
            "REDIS_URL": self.redis.url,
            "STORYTELLER_DEFAULT_MODEL": str(model_dir),
            **(env or {}),
        }
        # The worker and Daphne start side by side: each takes seconds to import what it
        # needs, and neither waits for the other.
        with ThreadPoolExecutor(max_workers=2) as pool:
            worker = pool.submit(start_worker, self.env, concurrency, worker_ready)
            web = pool.submit(start_web, self.env)
        failed = worker.exception() or web.exception()
        if failed:
            # Stop whichever did start, so that a failed set-up leaves no process behind.
            if not worker.exception():
                worker.result().stop()
            if not web.exception():
                web.result()[0].stop()
            self.redis.remove()
            raise failed
        self.worker = worker.result()
        self.more_workers = []
        self.web, url = web.result()
        self.url = url
        self.ws_url = url.replace("http://", "ws://")

    def add_worker(self, env: dict | None = None, ready: str = r"Loaded model", concurrency: int = 4):
        """Another generation worker process on the same database and Redis (and queue)."""
        worker = start_worker({**self.env, **(env or {})}, concurrency, ready)
        self.more_workers.append(worker)
        return worker

    def close(self):
        self.web.stop()
        for worker in [self.worker, *self.more_workers]:
            if worker.proc.poll() is None:
                worker.resume()  # a test may have paused it, and a paused process ignores SIGTERM
                worker.stop()
        self.redis.remove()


@pytest.fixture
def site(slow_model_dir):
    site = Site(slow_model_dir)
    yield site
    site.close()


async def open_socket(site, user, story):
    headers = dict((k.decode(), v.decode()) for k, v in await database_sync_to_async(session_headers)(user))
    return await websockets.connect(
        f"{site.ws_url}/ws/stories/{story.id}/",
        additional_headers={"Cookie": headers["cookie"]},
        origin=headers["origin"],
    )


async def receive(socket, timeout=30) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def receive_past_reading(socket, timeout=30) -> dict:
    """The next message that is not a `reading` report: a busy machine may take long enough
    over even a short prompt for the worker to say how far it has read."""
    while (message := await receive(socket, timeout))["type"] == "reading":
        pass
    return message


async def receive_queued(socket, timeout=30) -> dict:
    """A new generation's `queued` messages through the one that says it runs; the first."""
    return await queued_until_running(lambda: receive(socket, timeout))


def generate_over_http(site, user, story, params: dict) -> dict:
    """Starts a generation as a script would, with no socket: POST to the site's API with
    the writer's session and CSRF cookie; its JSON answer. (Blocking: the database is read
    for the session.)"""
    cookie = dict((k.decode(), v.decode()) for k, v in session_headers(user))["cookie"]
    with urllib.request.urlopen(urllib.request.Request(site.url + "/stories/", headers={"Cookie": cookie})) as page:
        csrf = SimpleCookie(page.headers["Set-Cookie"])["csrftoken"].value
    request = urllib.request.Request(
        f"{site.url}/api/stories/{story.id}/generations/",
        data=json.dumps({"text": story.text, "params": params}).encode(),
        headers={"Cookie": f"{cookie}; csrftoken={csrf}", "X-CSRFToken": csrf, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())
