"""Recorded choices: for every new token, the true likeliest candidates of the
distribution it was drawn from; and a first token the writer chose."""

import dataclasses

import pytest
import torch

from engine.config import SamplingParams
from tests.engine.helpers import run

PROMPT = "Once upon a time, there was a cat named Whiskers."
PARAMS = SamplingParams(max_new_tokens=12, temperature=0.7, top_k=40, top_p=0.9, repetition_penalty=1.3, seed=5)


def _distribution(engine, ids: list[int], params: SamplingParams) -> torch.Tensor:
    """The next-token distribution computed here, step by step and without the engine:
    one full forward pass, then penalty, temperature, top-k and top-p as documented."""
    with torch.no_grad():
        logits = engine.loaded.model(torch.tensor([ids])).logits[0, -1].float()
    seen = torch.tensor(sorted(set(ids)))
    scores = logits[seen]
    logits[seen] = torch.where(scores < 0, scores * params.repetition_penalty, scores / params.repetition_penalty)
    logits = logits / params.temperature
    kth = torch.topk(logits, params.top_k).values[-1]
    logits[logits < kth] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    ordered, order = torch.sort(probs, descending=True)
    drop = (torch.cumsum(ordered, dim=-1) - ordered) > params.top_p
    logits[order[drop]] = float("-inf")
    return torch.softmax(logits, dim=-1)


def test_recorded_candidates_are_the_true_top_five_of_each_tokens_distribution(engine):
    params = dataclasses.replace(PARAMS, record_choices=5)
    finished = run(engine, PROMPT, params)[2]
    assert len(finished.choices) == len(finished.token_ids) == 12
    ids = engine.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    for step, (token, candidates) in enumerate(zip(finished.token_ids, finished.choices, strict=True)):
        probs = _distribution(engine, ids + list(finished.token_ids[:step]), params)
        expected = torch.topk(probs, 5)
        expected = [(i, p) for i, p in zip(expected.indices.tolist(), expected.values.tolist(), strict=True) if p > 0]
        assert [c[0] for c in candidates] == [e[0] for e in expected], f"step {step}"
        assert [c[1] for c in candidates] == pytest.approx([e[1] for e in expected], abs=1e-4)
        assert probs[token] > 0  # the token was drawn from this distribution


def test_recording_changes_nothing_of_the_text(engine):
    plain = run(engine, PROMPT, PARAMS)[2]
    recorded = run(engine, PROMPT, dataclasses.replace(PARAMS, record_choices=5))[2]
    assert recorded.token_ids == plain.token_ids and plain.choices == ()


def test_a_greedy_token_is_the_first_of_its_candidates(engine):
    greedy = SamplingParams(max_new_tokens=6, temperature=0, top_k=0, top_p=1.0, record_choices=3)
    finished = run(engine, PROMPT, greedy)[2]
    assert [c[0][0] for c in finished.choices] == list(finished.token_ids)
    assert all(len(c) == 3 and c[0][1] >= c[1][1] >= c[2][1] for c in finished.choices)


def test_a_chosen_first_token_begins_the_continuation(engine):
    recorded = run(engine, PROMPT, dataclasses.replace(PARAMS, record_choices=5))[2]
    runner_up = recorded.choices[0][1][0]
    assert runner_up != recorded.token_ids[0]
    forced = run(engine, PROMPT, dataclasses.replace(PARAMS, first_token=runner_up))[2]
    assert forced.token_ids[0] == runner_up
    assert forced.text.startswith(engine.tokenizer.decode([runner_up]))


def test_the_pieces_of_the_tokens_spell_the_output_even_through_a_split_character(engine):
    # The first byte of "猫" alone: a token that leaves a character incomplete.
    partial = engine.tokenizer.convert_tokens_to_ids(engine.tokenizer.tokenize("猫")[0])
    assert "\ufffd" in engine.tokenizer.decode([partial])
    for seed in range(4):
        params = dataclasses.replace(PARAMS, record_choices=5, first_token=partial, seed=seed)
        finished = run(engine, PROMPT, params)[2]
        assert len(finished.pieces) == len(finished.token_ids)
        assert "".join(finished.pieces) == finished.text
        assert finished.pieces[0] == ""  # released with the token that completes (or breaks) it


def test_a_stop_sequence_cuts_the_output_but_not_the_pieces(engine):
    plain = run(engine, PROMPT, dataclasses.replace(PARAMS, record_choices=5))[2]
    stop = plain.text[len(plain.text) // 2 :][:3]
    finished = run(engine, PROMPT, dataclasses.replace(PARAMS, record_choices=5, stop=(stop,)))[2]
    assert finished.reason == "stop" and stop not in finished.text
    assert "".join(finished.pieces).startswith(finished.text) and len(finished.pieces) == len(finished.token_ids)


def test_without_recording_there_are_no_pieces(engine):
    assert run(engine, PROMPT, PARAMS)[2].pieces == ()
