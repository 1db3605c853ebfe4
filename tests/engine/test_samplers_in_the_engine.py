"""The fiction samplers (min-p, DRY, XTC) through the engine, with the tiny model."""

from engine.config import SamplingParams
from engine.engine import Request
from tests.engine.helpers import events_of, run

PROMPT = "Once upon a time, there was a cat named Whiskers. Whiskers liked the sea."
GREEDY = dict(max_new_tokens=120, temperature=0, top_k=0, top_p=1.0, ignore_eos=True)


def repeated_runs(ids, length):
    """The runs of `length` tokens that occur more than once in ids."""
    runs = [tuple(ids[i : i + length]) for i in range(len(ids) - length + 1)]
    return {run for run in runs if runs.count(run) > 1}


def test_dry_keeps_a_looping_model_from_repeating_any_run_longer_than_allowed(engine):
    prompt_ids = engine.tokenizer(PROMPT)["input_ids"]
    _, _, plain = run(engine, PROMPT, SamplingParams(**GREEDY))
    # The tiny model, left alone, loops: its greedy text repeats runs of three tokens.
    assert repeated_runs([*prompt_ids, *plain.token_ids], 3)

    dry = SamplingParams(**GREEDY, dry_multiplier=5.0, dry_base=4.0, dry_allowed_length=2, dry_sequence_breakers=())
    _, _, kept = run(engine, PROMPT, dry)
    assert kept.new_tokens == 120
    # A token that would make a run of two into a repeated run of three loses at least 5
    # of its logit, far more than the tiny model's logits differ by.
    assert not repeated_runs([*prompt_ids, *kept.token_ids], 3)


def test_dry_sequence_breakers_are_read_through_the_tokenizer(engine):
    """Breakers are strings: the engine marks the tokens whose text holds one. A run that
    meets a breaker stops, so with every character a breaker DRY changes nothing."""
    tokenizer, vocabulary = engine.tokenizer, engine.loaded.model.config.vocab_size
    texts = [tokenizer.decode([i]) if i < len(tokenizer) else "" for i in range(vocabulary)]
    mask = engine._breakers(("\n", "e"))
    assert mask.tolist() == [("\n" in text or "e" in text) for text in texts]
    assert 0 < int(mask.sum()) < vocabulary

    _, _, plain = run(engine, PROMPT, SamplingParams(**GREEDY))
    every_character = tuple(sorted({c for text in texts for c in text}))
    broken = SamplingParams(**GREEDY, dry_multiplier=5.0, dry_sequence_breakers=every_character)
    _, _, finished = run(engine, PROMPT, broken)
    assert finished.token_ids == plain.token_ids


def test_min_p_one_is_greedy_and_xtc_changes_a_seeded_text_reproducibly(engine):
    seeded = dict(max_new_tokens=60, temperature=1.0, top_k=0, top_p=1.0, ignore_eos=True, seed=11)
    _, _, greedy = run(engine, PROMPT, SamplingParams(**GREEDY))
    # min_p 1 keeps only the likeliest token (and ties): the sampled text is the greedy one.
    _, _, sure = run(engine, PROMPT, SamplingParams(**{**seeded, "max_new_tokens": 120}, min_p=1.0))
    assert sure.token_ids == greedy.token_ids

    _, _, plain = run(engine, PROMPT, SamplingParams(**seeded))
    xtc = SamplingParams(**seeded, xtc_probability=1.0, xtc_threshold=0.01)
    _, _, first = run(engine, PROMPT, xtc)
    _, _, again = run(engine, PROMPT, xtc)
    assert first.token_ids == again.token_ids != plain.token_ids


def test_rows_with_each_sampler_give_in_one_batch_what_they_give_alone(engine):
    samplers = [
        SamplingParams(max_new_tokens=40, temperature=0.9, top_k=0, top_p=1.0, min_p=0.1, seed=1, ignore_eos=True),
        SamplingParams(max_new_tokens=40, temperature=0.9, top_k=20, dry_multiplier=0.8, seed=2, ignore_eos=True),
        SamplingParams(
            max_new_tokens=40,
            temperature=1.0,
            top_k=50,
            xtc_probability=0.5,
            xtc_threshold=0.05,
            seed=3,
            ignore_eos=True,
        ),
        SamplingParams(**{**GREEDY, "max_new_tokens": 40}, dry_multiplier=2.0),
    ]
    alone = [run(engine, PROMPT, params, request_id=f"alone-{i}")[2].token_ids for i, params in enumerate(samplers)]
    handles = [engine.submit(Request(f"batch-{i}", PROMPT, params)) for i, params in enumerate(samplers)]
    together = [events_of(handle)[2].token_ids for handle in handles]
    assert together == alone
