"""Banned phrases and word bias through the engine, with the tiny model: a banned phrase
the model would write never reaches the text or the stream, across token boundaries and
in a batch; a word's bias moves its first tokens."""

import pytest

import engine.engine as engine_module
from engine.banning import BannedText
from engine.config import SamplingParams
from engine.engine import Request
from tests.engine.helpers import events_of, run

PROMPT = "Once upon a time, there was a cat named Whiskers. Whiskers liked the sea."
GREEDY = dict(max_new_tokens=100, temperature=0, top_k=0, top_p=1.0, ignore_eos=True)


def a_phrase_across_tokens(engine, finished, at=10):
    """Text the model wrote that begins inside one token and ends inside another, three
    tokens on: it can only be caught across token boundaries."""
    pieces = [engine.tokenizer.decode(finished.token_ids[: i + 1]) for i in range(len(finished.token_ids))]
    start, end = len(pieces[at - 1]), len(pieces[at + 2])
    phrase = finished.text[start + 1 : end - 1]
    assert phrase.strip() and len(phrase) >= 3
    return phrase


def test_a_banned_phrase_the_model_would_write_is_never_written_or_streamed(engine):
    _, _, plain = run(engine, PROMPT, SamplingParams(**GREEDY))
    phrase = a_phrase_across_tokens(engine, plain)
    assert phrase in plain.text

    _, deltas, banned = run(engine, PROMPT, SamplingParams(**GREEDY, banned=(phrase.upper(),)))
    assert banned.reason == "length" and banned.new_tokens == 100
    assert phrase.lower() not in banned.text.lower()
    # What streamed is the text, and it never showed the phrase either.
    assert "".join(deltas) == banned.text
    assert banned.text == engine.tokenizer.decode(banned.token_ids)
    # Up to where the phrase began, it is the same text.
    assert banned.text[: plain.text.index(phrase) - 8] == plain.text[: plain.text.index(phrase) - 8]


def test_every_banned_phrase_is_kept_out_however_often_the_model_comes_back_to_it(engine):
    _, _, plain = run(engine, PROMPT, SamplingParams(**GREEDY))
    words = sorted({word.strip(".,") for word in plain.text.split() if len(word.strip(".,")) > 3})[:6]
    assert words
    _, deltas, banned = run(engine, PROMPT, SamplingParams(**GREEDY, banned=tuple(words)))
    assert banned.reason == "length"
    assert not [word for word in words if word.lower() in banned.text.lower()]
    assert "".join(deltas) == banned.text


def test_a_generation_that_cannot_write_around_a_phrase_ends_before_it(engine, monkeypatch):
    _, _, plain = run(engine, PROMPT, SamplingParams(**GREEDY))
    phrase = a_phrase_across_tokens(engine, plain)
    monkeypatch.setattr(engine_module, "MAX_GOING_BACK", 0)
    _, deltas, finished = run(engine, PROMPT, SamplingParams(**GREEDY, banned=(phrase,)))
    assert finished.reason == "error" and "banned phrases" in finished.error
    # Neither the text nor the stream ever showed it; the text is the model's up to there.
    assert phrase not in finished.text and "".join(deltas) == finished.text
    assert plain.text.startswith(finished.text) and finished.text


def test_a_phrase_one_token_holds_whole_is_never_drawn(engine):
    _, _, plain = run(engine, PROMPT, SamplingParams(**GREEDY))
    texts = [engine.tokenizer.decode([token]) for token in plain.token_ids]
    whole = max(texts, key=lambda text: len(text.strip()))
    assert len(whole.strip()) >= 3
    _, deltas, finished = run(engine, PROMPT, SamplingParams(**GREEDY, banned=(whole.strip().upper(),)))
    assert finished.reason == "length"
    assert whole.strip().lower() not in finished.text.lower() and "".join(deltas) == finished.text


def test_banned_phrases_give_in_a_batch_what_they_give_alone(engine):
    _, _, plain = run(engine, PROMPT, SamplingParams(**GREEDY))
    phrase = a_phrase_across_tokens(engine, plain)
    requests = [
        SamplingParams(**GREEDY, banned=(phrase,)),
        SamplingParams(max_new_tokens=80, temperature=0.9, top_k=40, seed=5, ignore_eos=True, banned=(phrase, "the")),
        SamplingParams(**GREEDY),
        SamplingParams(max_new_tokens=80, temperature=1.0, top_k=0, top_p=0.95, seed=9, ignore_eos=True),
    ]
    alone = [run(engine, PROMPT, params, request_id=f"alone-{i}")[2] for i, params in enumerate(requests)]
    handles = [engine.submit(Request(f"batch-{i}", PROMPT, params)) for i, params in enumerate(requests)]
    together = [events_of(handle)[2] for handle in handles]
    assert [f.token_ids for f in together] == [f.token_ids for f in alone]
    assert phrase not in together[0].text and "the" not in together[1].text.lower()


def test_bias_makes_a_word_likelier_or_rarer(engine):
    _, _, plain = run(engine, PROMPT, SamplingParams(**GREEDY))
    first = engine.tokenizer.decode(plain.token_ids[:1]).strip()
    assert first
    _, _, lowered = run(engine, PROMPT, SamplingParams(**GREEDY, bias=((first, -10.0),)))
    assert lowered.token_ids[0] != plain.token_ids[0]
    # A word the model did not write first, raised: it comes first.
    other = "harbour"
    _, _, raised = run(engine, PROMPT, SamplingParams(**GREEDY, bias=((other, 10.0),)))
    # Its first tokens as written inside a sentence and at its start, capitalized or not.
    forms = ("harbour", " harbour", "Harbour", " Harbour")
    starts = {engine.tokenizer(form, add_special_tokens=False)["input_ids"][0] for form in forms}
    assert plain.token_ids[0] not in starts
    assert raised.token_ids[0] in starts


@pytest.mark.parametrize(
    ("pieces", "phrases", "expected"),
    [
        # Held while it could still become "dragon", released once it cannot.
        (["The", " dr", "ag", "ons"], ("dragon",), [("The", 1, None), ("", 0, None), ("", 0, None), ("", 0, 1)]),
        (["The", " dr", "ink"], ("dragon",), [("The", 1, None), ("", 0, None), (" drink", 2, None)]),
        # Case-insensitive, and back to the token where the phrase began.
        (["A", " Big", " DOG", "."], ("big dog",), [("A", 1, None), ("", 0, None), ("", 0, 1)]),
    ],
)
def test_the_watch_over_the_output_holds_releases_and_goes_back_by_whole_tokens(pieces, phrases, expected):
    watch = BannedText(phrases)
    got = []
    for index, piece in enumerate(pieces[: len(expected)]):
        got.append(watch.push(index, piece))
    assert got == expected
