"""Shared fixtures: a real Redis, a tiny model, a real Celery worker and a real Daphne
server, both in their own processes on the test database; named writers. What they start
is in tests/harness/."""

import os

import pytest

from tests.harness import PASSWORD
from tests.harness.models import TINY, shared_tiny_model
from tests.harness.processes import start_training_worker, start_web, start_worker, subprocess_env
from tests.harness.redis import RedisServer

# A site of its own for the tests that break things (tests/sites.py).
pytest_plugins = ["tests.sites"]

# Torch in each test process and in each worker it starts uses one thread. Several of them
# run at once (pytest-xdist's processes, their workers), and torch's threads, each set to
# the number of cores, wait for one another busily: on a shared two-core machine the slow
# model wrote 17 tokens a second with one thread and 5 with two. Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

_redis: RedisServer | None = None


def pytest_configure(config):
    from django.conf import settings

    from storyteller import redis_urls

    global _redis
    # Under pytest-xdist every test process starts a Redis of its own: in a shared one, one
    # process's worker would take another's tasks, which name rows in another database.
    url = None if hasattr(config, "workerinput") else os.environ.get("TEST_REDIS_URL")
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
def shared_models_dir(tmp_path_factory, pytestconfig):
    """A folder that every test process of this run shares (pytest-xdist's workers each
    have a temporary folder of their own inside the run's)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(pytestconfig, "workerinput") else base


@pytest.fixture(scope="session")
def tiny_model_dir(shared_models_dir):
    return shared_tiny_model(shared_models_dir / "tiny-model", **TINY)


@pytest.fixture(scope="session", autouse=True)
def default_model_is_tiny(tiny_model_dir):
    """Every test that does not say otherwise runs the tiny model."""
    from django.conf import settings

    settings.STORYTELLER_DEFAULT_MODEL = str(tiny_model_dir)
    os.environ["STORYTELLER_DEFAULT_MODEL"] = str(tiny_model_dir)


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


def _shared_worker_env() -> dict:
    """The session's shared workers work on the test database beside the sites that tests
    start (tests/sites.py), each on a Redis of its own: they leave those sites' generations
    to the sites' own workers, which publish where the sites' sockets listen."""
    return {**subprocess_env(), "STORYTELLER_WORKER_SWEEPS": "0"}


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, default_model_is_tiny):
    """A real Celery worker process on the test database and Redis."""
    worker = start_worker(_shared_worker_env())
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def training_worker(django_db_setup, django_db_blocker, default_model_is_tiny, tmp_path_factory):
    """A real training worker; what it trains goes to a models folder of its own."""
    models = tmp_path_factory.mktemp("trained-models")
    worker = start_training_worker({**_shared_worker_env(), "STORYTELLER_MODELS_DIR": str(models)})
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def live_site(celery_worker):
    """Daphne serving the site on a free port, with the worker behind it."""
    server, url = start_web(subprocess_env())
    yield url
    server.stop()


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets a channel layer object of its own. A consumer still receiving when its
    test's event loop closed leaves the shared one's receive lock held and bound to that
    loop, and every later socket of the process then fails to receive (seen once in CI:
    seven socket tests timed out in a row, "Lock ... is bound to a different event loop")."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()


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
    """Alice's story with two revisions, a lore entry, a share link, a generation and a
    node of its tree (the current one)."""
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
    text = story.text + generation.output
    services.tree_add(
        story=story, kind="generation", text=text, start=len(story.text), end=len(text), generation_id=generation.id
    )
    return story, entry, generation


@pytest.fixture
def opening():
    """The text `story` starts with; a test file whose assertions count another text's words
    defines this fixture again."""
    from tests.generation.conftest import OPENING

    return OPENING


@pytest.fixture
def story(alice, opening):
    """Alice's story, at its opening."""
    from storyteller.stories.services import story_create

    return story_create(owner=alice, title="Whiskers", text=opening)


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
