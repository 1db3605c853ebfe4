import pytest
from transformers import AutoTokenizer

from engine.detokenize import IncrementalDetokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize(
    "text", ["Café naïve déjà vu", "猫は海を見ていた。", "The cat 🐈 and the sea 🌊.", "é猫🐈 café"]
)
def test_deltas_join_to_the_decoded_text_and_never_split_a_character(tokenizer, text):
    prompt = tokenizer("Once upon a time", add_special_tokens=False)["input_ids"]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(tokenizer, prompt)
    deltas = [detok.push(token) for token in ids]
    deltas.append(detok.flush())
    assert "".join(deltas) == tokenizer.decode(ids) == text
    assert not any("\ufffd" in d for d in deltas)


def test_an_emoji_split_over_several_tokens_comes_out_whole(tokenizer):
    ids = tokenizer("🐈", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1, "the tiny tokenizer should split this emoji into byte tokens"
    detok = IncrementalDetokenizer(tokenizer, [])
    deltas = [detok.push(token) for token in ids]
    assert deltas[:-1] == [""] * (len(ids) - 1)
    assert deltas[-1] == "🐈"
