import torch

from engine.config import SamplingParams
from engine.sampling import make_generator, sample_with_choices

GEN = make_generator(0, torch.device("cpu"))
NOTHING_SEEN = torch.tensor([], dtype=torch.long)


def next_token(logits, params, seen_ids, generator) -> int:
    """The engine's sampler on a batch of one row."""
    tokens, _ = sample_with_choices(logits[None, :], [params], [seen_ids], [generator])
    return tokens[0]


def test_temperature_zero_takes_the_likeliest_token():
    logits = torch.tensor([0.1, 3.0, 2.9])
    assert next_token(logits, SamplingParams(temperature=0), NOTHING_SEEN, GEN) == 1


def test_top_k_one_always_takes_the_likeliest_token():
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    picks = {
        next_token(logits, SamplingParams(temperature=2.0, top_k=1, top_p=1.0), NOTHING_SEEN, GEN) for _ in range(50)
    }
    assert picks == {1}


def test_top_p_keeps_only_the_smallest_set_that_reaches_p():
    # Probabilities about 0.64, 0.24, 0.09, 0.03: top_p 0.7 keeps the first two.
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0])
    params = SamplingParams(temperature=1.0, top_k=0, top_p=0.7)
    picks = {next_token(logits, params, NOTHING_SEEN, GEN) for _ in range(300)}
    assert picks == {0, 1}


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([2.0, -1.0, 0.5])
    seen = torch.tensor([0, 1])
    assert next_token(logits, SamplingParams(temperature=0, repetition_penalty=2.0), seen, GEN) == 0
    assert next_token(logits, SamplingParams(temperature=0, repetition_penalty=5.0), seen, GEN) == 2


def test_the_same_seed_samples_the_same_tokens():
    logits = torch.zeros(50)
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0)
    first = [next_token(logits, params, NOTHING_SEEN, make_generator(7, torch.device("cpu"))) for _ in range(3)]
    g1, g2 = make_generator(7, torch.device("cpu")), make_generator(7, torch.device("cpu"))
    assert [next_token(logits, params, NOTHING_SEEN, g1) for _ in range(10)] == [
        next_token(logits, params, NOTHING_SEEN, g2) for _ in range(10)
    ]
    assert len(set(first)) == 1
