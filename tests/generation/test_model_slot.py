"""The worker's model slot on its own, with the tiny model: the configuration's engine
limits reach the engine, a new configuration takes over new generations while leased
ones finish, and a model that fails to load changes nothing."""

import pytest

from engine.config import EngineConfig, ModelSpec
from engine.errors import ModelLoadError
from generation.worker.engines import Engines
from generation.worker.serving import ModelSlot, Wanted


def wanted(source, key, **limits):
    return Wanted(spec=ModelSpec(source=str(source)), engine=EngineConfig(**limits), config_name=f"C{key}", key=(key,))


def test_the_configurations_engine_limits_reach_the_engine(tiny_model_dir):
    slot = ModelSlot(Engines())
    lease = slot.acquire(lambda: wanted(tiny_model_dir, 1, max_batch_size=4, context_window=256))
    assert (lease.engine.config.max_batch_size, lease.engine.context_window) == (4, 256)
    assert slot.status()["live_requests"] == 1
    slot.release(lease)
    assert slot.status() | {"load_seconds": None} == {
        "model_name": tiny_model_dir.name, "dtype": "float16 weights", "device": "cpu", "load_seconds": None,
        "config_name": "C1", "state": "ready", "loading": "", "error": "", "live_requests": 0,
        "kv_cache": {
            "held_tokens": 0, "cached_tokens": 0, "budget_tokens": 32768, "prompt_tokens": 0, "found_tokens": 0
        },
    }  # fmt: skip


def test_new_limits_load_a_new_engine_and_the_old_one_goes_once_released(tiny_model_dir):
    slot = ModelSlot(Engines())
    old = slot.acquire(lambda: wanted(tiny_model_dir, 1, max_batch_size=4))
    slot.load(wanted(tiny_model_dir, 2, max_batch_size=8))
    new = slot.acquire(lambda: pytest.fail("a model serves; nothing should load"))
    assert new.engine is not old.engine and new.engine.config.max_batch_size == 8
    assert old.engine._thread.is_alive()  # still leased: it finishes its generation
    slot.release(old)
    assert not old.engine._thread.is_alive()
    slot.release(new)
    slot.load(wanted(tiny_model_dir, 3, max_batch_size=8))  # the same model and limits: kept
    assert slot.acquire(lambda: None).engine is new.engine


def test_a_model_that_fails_to_load_leaves_the_old_one_and_is_not_retried_until_changed(tiny_model_dir, tmp_path):
    slot = ModelSlot(Engines())
    serving = slot.acquire(lambda: wanted(tiny_model_dir, 1))
    slot.release(serving)
    with pytest.raises(ModelLoadError):
        slot.load(wanted(tmp_path / "nothing-here", 2))
    status = slot.status()
    assert status["state"] == "ready" and status["error"].startswith("C2: ")
    assert slot.acquire(lambda: None).engine is serving.engine

    slot.follow(wanted(tmp_path / "nothing-here", 2))  # the same failed configuration
    assert slot.status()["loading"] == ""
