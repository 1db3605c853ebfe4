"""A corpus that cannot be trained on is refused with a clear message, before training."""

import pytest

from engine.config import ModelSpec
from engine.errors import CorpusError
from engine.loader import load
from engine.training.corpus import Document, build
from generation.training.uploads import read_text_file

pytestmark = pytest.mark.nodb  # no database: the PostgreSQL pass skips it


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load(ModelSpec(source=str(tiny_model_dir))).tokenizer


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"Caf\xe9 au lait", "a.txt is not UTF-8 text (byte 0xe9 at position 3)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "a.txt is not a plain-text file"),
        (b"  \n\n ", "a.txt is empty"),
        (b"", "a.txt is empty"),
    ],
)
def test_a_file_that_is_not_text_is_refused_saying_why(data, words):
    with pytest.raises(CorpusError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_text_file("a.txt", data)


def test_a_utf8_file_is_read_with_or_without_a_byte_order_mark():
    assert read_text_file("a.txt", "\ufeffCafé".encode()) == "Café"
    assert read_text_file("a.txt", "猫は海を見ていた".encode()) == "猫は海を見ていた"


def test_an_empty_corpus_or_document_or_too_little_text_is_refused(tokenizer):
    with pytest.raises(CorpusError, match="The corpus is empty"):
        build(tokenizer, [], sequence_length=16, heldout_percent=10)
    with pytest.raises(CorpusError, match="Whiskers has no text"):
        build(tokenizer, [Document("Whiskers", " \n")], sequence_length=16, heldout_percent=10)
    with pytest.raises(CorpusError, match=r"needs at least 512 \(two examples of 256 tokens"):
        build(tokenizer, [Document("Whiskers", "A cat by the sea.")], sequence_length=256, heldout_percent=10)


def test_the_corpus_is_cut_into_examples_and_some_are_held_out(tokenizer):
    text = "Once upon a time, there was a cat named Whiskers. " * 40
    built = build(tokenizer, [Document("a", text), Document("b", text)], sequence_length=16, heldout_percent=10)
    examples = len(built.train) + len(built.heldout)
    assert examples == built.tokens // 16 and built.train.shape[1] == 16
    assert len(built.heldout) == examples // 10 and len(built.train) > 0
    # The documents are joined with the end-of-text token between them.
    assert (built.train == tokenizer.eos_token_id).sum() + (built.heldout == tokenizer.eos_token_id).sum() >= 1
