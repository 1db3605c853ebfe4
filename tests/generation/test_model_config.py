"""A configuration's engine limits: checked when an operator saves them, and run by the
worker's engine as they were set. The prefix cache's budget is one of them."""

import pytest
from django.core.exceptions import ValidationError

from generation import services
from generation.models import ModelConfig
from generation.worker.engines import Engines
from generation.worker.serving import ModelSlot, model_wanted

pytestmark = pytest.mark.django_db


def refusal(**limits) -> list[str]:
    with pytest.raises(ValidationError) as refused:
        ModelConfig(name="Tiny", **limits).full_clean()
    return refused.value.message_dict.get("prefix_cache_tokens", [])


def test_a_prefix_cache_smaller_than_one_block_is_refused_saying_why():
    assert refusal(prefix_cache_tokens=15) == [
        "The prefix cache keeps whole blocks of 16 positions, so 15 would keep nothing: "
        "set 0 to turn it off, or at least 16."
    ]


def test_a_prefix_cache_past_any_machines_memory_is_refused():
    assert refusal(prefix_cache_tokens=10_485_760) == ["Ensure this value is less than or equal to 1048576."]


def test_a_negative_prefix_cache_is_refused():
    assert refusal(prefix_cache_tokens=-1) == ["Ensure this value is greater than or equal to 0."]


@pytest.mark.parametrize("tokens", [0, 16, 32_768, 1_048_576])
def test_off_one_block_or_any_size_up_to_the_ceiling_is_taken(tokens):
    ModelConfig(name="Tiny", prefix_cache_tokens=tokens).full_clean()


def test_the_engine_limits_name_the_prefix_cache_only_when_it_is_set():
    assert ModelConfig(name="Default").engine_limits() == {}
    assert ModelConfig(name="Off", prefix_cache_tokens=0).engine_limits() == {"prefix_cache_tokens": 0}
    config = ModelConfig(name="Set", max_batch_size=8, prefix_cache_tokens=4096, context_window=512)
    assert config.engine_limits() == {"max_batch_size": 8, "prefix_cache_tokens": 4096, "context_window": 512}


def test_the_workers_engine_keeps_the_prefixes_the_configuration_allows(tiny_model_dir):
    services.model_config_activate(ModelConfig(name="Tiny", source=str(tiny_model_dir), prefix_cache_tokens=4096))
    slot = ModelSlot(Engines())
    first = slot.acquire(model_wanted)
    assert first.engine.cache_stats()["budget_tokens"] == 4096
    slot.release(first)

    # Turning it off is a new limit like any other: the worker loads an engine that runs it.
    config = ModelConfig.objects.get(name="Tiny")
    config.prefix_cache_tokens = 0
    services.model_config_save(config)
    slot.load(model_wanted())
    second = slot.acquire(lambda: pytest.fail("a model serves; nothing should load"))
    assert second.engine is not first.engine and second.engine.cache_stats()["budget_tokens"] == 0
    slot.release(second)
