"""The worker's one registry of engines, with the tiny model: a model is loaded once however
many ask for it at the same moment, shut down when its last holder lets it go, and kept
for the next one only when asked."""

import threading
from unittest import mock

import pytest

from engine.config import EngineConfig, ModelSpec
from engine.engine import Engine
from engine.errors import ModelLoadError
from generation.worker.engines import Engines

pytestmark = pytest.mark.nodb


def test_concurrent_first_requests_wait_for_one_load(tiny_model_dir):
    registry, spec = Engines(), ModelSpec(source=str(tiny_model_dir))
    got, start = [], threading.Barrier(4)

    def ask():
        start.wait()
        got.append(registry.acquire(spec))

    with mock.patch.object(Engine, "load", wraps=Engine.load) as load:
        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert load.call_count == 1 and len(got) == 4 and all(engine is got[0] for engine in got)
    for engine in got[:3]:
        registry.release(engine)
    assert got[0]._thread.is_alive()  # one holder left
    registry.release(got[3])
    assert not got[0]._thread.is_alive()


def test_other_limits_are_another_engine(tiny_model_dir):
    registry, spec = Engines(), ModelSpec(source=str(tiny_model_dir))
    small, large = registry.acquire(spec, EngineConfig(max_batch_size=2)), registry.acquire(spec, EngineConfig())
    assert small is not large and small.config.max_batch_size == 2
    registry.release(small)
    registry.release(large)


def test_kept_engines_are_the_last_ones_released(tiny_model_dir, tmp_path):
    registry = Engines()
    specs = [ModelSpec(source=str(tiny_model_dir), models_dir=str(tmp_path / str(n))) for n in range(3)]
    first, second, third = (registry.acquire(spec) for spec in specs)
    for engine in (first, second, third):
        registry.release(engine, keep=2)
    assert not first._thread.is_alive() and second._thread.is_alive() and third._thread.is_alive()
    with mock.patch.object(Engine, "load", side_effect=AssertionError("kept: nothing should load")):
        assert registry.acquire(specs[1]) is second
    registry.release(second)  # not kept this time: shut down at once
    assert not second._thread.is_alive() and third._thread.is_alive()


def test_a_failed_load_is_tried_again_by_the_next_request(tiny_model_dir, tmp_path):
    registry = Engines()
    missing = ModelSpec(source=str(tmp_path / "nowhere"))
    with pytest.raises(ModelLoadError):
        registry.acquire(missing)
    with mock.patch.object(Engine, "load", wraps=Engine.load) as load, pytest.raises(ModelLoadError):
        registry.acquire(missing)
    assert load.call_count == 1
