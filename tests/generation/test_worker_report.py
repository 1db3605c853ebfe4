"""A worker's report carries its engine's KV cache, as the engine counts it: what running
generations hold, what is kept for prefixes against its budget, and how much of the
prompts it read was found there. The admin's row, the heartbeat and the staff dashboard
get the same."""

import pytest

from engine.config import EngineConfig, ModelSpec, SamplingParams
from engine.engine import Request
from generation import realtime
from generation.models import Worker
from generation.worker.engines import Engines
from generation.worker.serving import ModelSlot, Wanted
from generation.worker.supervisor import worker_report
from tests.engine.helpers import events_of

pytestmark = pytest.mark.django_db

# 100 token ids of the tiny model's vocabulary: six whole blocks of 16 and four more.
STORY = tuple(3 + (i * 37 + i // 7) % 97 for i in range(100))


@pytest.fixture(autouse=True)
def forget_the_heartbeat():
    """The heartbeat goes to the Redis every test process shares: /healthz elsewhere would
    count this made-up worker as live."""
    yield
    realtime.redis_client().delete(realtime._WORKER_PREFIX + "host-a:11")


def write(engine, request_id):
    params = SamplingParams(max_new_tokens=8, temperature=0, top_k=0, top_p=1.0, ignore_eos=True)
    finished = events_of(engine.submit(Request(request_id, "", params, prompt_ids=STORY)))[2]
    assert finished.reason == "length", finished.error


def test_the_report_says_how_much_of_a_retry_the_prefix_cache_found(tiny_model_dir, admin_client):
    slot = ModelSlot(Engines())
    wanted = Wanted(ModelSpec(source=str(tiny_model_dir)), EngineConfig(prefix_cache_tokens=4096), "Tiny", (1,))
    lease = slot.acquire(lambda: wanted)
    assert slot.status()["kv_cache"]["prompt_tokens"] == 0
    write(lease.engine, "first")
    write(lease.engine, "retry")  # the writer pressed Retry: the same prompt again
    slot.release(lease)

    worker_report("host-a:11", slot.status())
    kv_cache = Worker.objects.get(name="host-a:11").kv_cache
    # Both read 100 prompt tokens; the retry found all of it but its last, unfinished block.
    assert (kv_cache["prompt_tokens"], kv_cache["found_tokens"]) == (200, 96)
    # Nothing runs now; the story's six whole blocks are kept, its unfinished last one is not.
    assert (kv_cache["held_tokens"], kv_cache["cached_tokens"], kv_cache["budget_tokens"]) == (0, 96, 4096)
    assert realtime.live_workers()["host-a:11"]["kv_cache"] == kv_cache
    # The staff dashboard's "now" gives the same figures, and the hit rate.
    shown = {w["name"]: w for w in admin_client.get("/staff/dashboard/data").json()["now"]["workers"]}
    assert shown["host-a:11"]["kv_cache"] == {**kv_cache, "hit_rate": 0.48}


def test_a_worker_with_no_model_yet_reports_no_cache():
    slot = ModelSlot(Engines())
    worker_report("host-a:11", slot.status())
    assert Worker.objects.get(name="host-a:11").kv_cache == {}
