import torch

from engine.config import SamplingParams
from engine.sampling import dry_penalties, make_generator, sample_with_choices

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


def distribution(logits, params, seen_ids=NOTHING_SEEN, breakers=None, seed=0):
    """The distribution the row's token is drawn from, after every filter, as {token: p}
    (through record_choices, which reports it)."""
    params = SamplingParams(**{**params.__dict__, "record_choices": 10})
    _, choices = sample_with_choices(
        logits[None, :], [params], [seen_ids], [make_generator(seed, torch.device("cpu"))], [breakers]
    )
    return {token: round(p, 4) for token, p in choices[0]}


def probabilities_of(*weights):
    """Logits whose softmax is these probabilities."""
    return torch.tensor(weights, dtype=torch.float).log()


def test_min_p_keeps_the_tokens_at_least_that_fraction_as_likely_as_the_likeliest():
    logits = probabilities_of(0.5, 0.3, 0.15, 0.05)
    plain = SamplingParams(temperature=1.0, top_k=0, top_p=1.0)
    assert distribution(logits, plain) == {0: 0.5, 1: 0.3, 2: 0.15, 3: 0.05}
    # 0.2 x 0.5 = 0.1: the 0.05 token goes, and the rest share its mass in proportion.
    assert distribution(logits, SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.2)) == {
        0: round(0.5 / 0.95, 4),
        1: round(0.3 / 0.95, 4),
        2: round(0.15 / 0.95, 4),
    }


def test_xtc_leaves_out_the_likely_tokens_but_the_least_likely_of_them():
    logits = probabilities_of(0.4, 0.3, 0.2, 0.1)
    always = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, xtc_probability=1.0, xtc_threshold=0.25)
    # 0.4 and 0.3 reach 0.25: 0.4 goes, 0.3 stays with 0.2 and 0.1.
    assert distribution(logits, always) == {1: 0.5, 2: round(0.2 / 0.6, 4), 3: round(0.1 / 0.6, 4)}
    # With one token over the threshold there is nothing to exclude.
    high = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, xtc_probability=1.0, xtc_threshold=0.35)
    assert distribution(logits, high) == {0: 0.4, 1: 0.3, 2: 0.2, 3: 0.1}
    never = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, xtc_probability=0.0, xtc_threshold=0.25)
    assert distribution(logits, never) == {0: 0.4, 1: 0.3, 2: 0.2, 3: 0.1}


def test_xtc_at_a_threshold_of_zero_counts_only_the_tokens_still_in_play():
    logits = probabilities_of(0.4, 0.3, 0.2, 0.1)
    # Top-k leaves two tokens; the two left out have probability 0 and are not "likely".
    zero = SamplingParams(temperature=1.0, top_k=2, top_p=1.0, xtc_probability=1.0, xtc_threshold=0.0)
    assert distribution(logits, zero) == {1: 1.0}


def test_xtc_acts_on_its_probability_of_steps_drawn_from_the_rows_seed():
    logits = probabilities_of(0.4, 0.3, 0.2, 0.1)
    half = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, xtc_probability=0.5, xtc_threshold=0.25)
    acted = [0 not in distribution(logits, half, seed=seed) for seed in range(200)]
    assert 70 < sum(acted) < 130
    assert acted == [0 not in distribution(logits, half, seed=seed) for seed in range(200)]


def test_dry_penalizes_the_token_that_would_repeat_a_run_by_the_runs_length():
    # ... 5 6 7 8 ... 5 6 7: after "5 6 7", token 8 would repeat a run of 3 (5, 6, 7).
    seen = torch.tensor([5, 6, 7, 8, 1, 5, 6, 7])
    logits = torch.zeros(10)
    dry = SamplingParams(temperature=0, dry_multiplier=1.0, dry_base=2.0, dry_allowed_length=2)
    penalties = dry_penalties(seen, dry, None, 10)
    # 1 x 2 ^ (3 - 2) = 2, on token 8 alone.
    assert penalties.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 2.0, 0]
    # The run is 3 long: allowed 4 leaves it alone; allowed 3 costs 1 x 2 ^ 0.
    assert (
        dry_penalties(seen, SamplingParams(dry_multiplier=1.0, dry_base=2.0, dry_allowed_length=4), None, 10).sum() == 0
    )
    assert (
        dry_penalties(seen, SamplingParams(dry_multiplier=1.0, dry_base=2.0, dry_allowed_length=3), None, 10)[8] == 1.0
    )
    # A greedy row that would take 8 takes the next likeliest once 8 is penalized.
    logits[8], logits[3] = 1.5, 1.0
    assert next_token(logits, SamplingParams(temperature=0), seen, GEN) == 8
    tokens, _ = sample_with_choices(logits[None, :], [dry], [seen], [GEN])
    assert tokens == [3]


def test_dry_runs_stop_at_a_breaker_and_keep_the_longest_run_for_each_token():
    seen = torch.tensor([5, 6, 7, 8, 1, 5, 6, 7])
    dry = SamplingParams(dry_multiplier=1.0, dry_base=2.0, dry_allowed_length=2)
    breakers = torch.zeros(10, dtype=torch.bool)
    breakers[5] = True
    # 5 breaks the run: only "6 7" matches, 2 long: 1 x 2 ^ 0.
    assert dry_penalties_of(seen, dry, breakers)[8] == 1.0
    # A breaker as the token that came next is never penalized.
    breakers[8] = True
    assert dry_penalties_of(seen, dry, breakers).sum() == 0
    # Two earlier places: 4 follows a run of 2, 9 a run of 3; each gets its own.
    seen = torch.tensor([6, 7, 4, 5, 6, 7, 9, 0, 5, 6, 7])
    penalties = dry_penalties_of(seen, dry, None)
    assert (penalties[4], penalties[9]) == (1.0, 2.0)


def dry_penalties_of(seen, params, breakers):
    return dry_penalties(seen, params, breakers, 10)


def test_the_new_samplers_keep_a_rows_tokens_whatever_its_batch():
    """Rows with different samplers and different top-k: each row's seeded tokens are the
    ones it gets alone."""
    torch.manual_seed(3)
    logits = torch.randn(4, 50) * 3
    seen = [torch.randint(0, 50, (40,)) for _ in range(4)]
    params = [
        SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.05, seed=1),
        SamplingParams(temperature=0.9, top_k=20, top_p=0.9, xtc_probability=0.5, xtc_threshold=0.1, seed=2),
        SamplingParams(temperature=1.1, dry_multiplier=0.8, seed=3),
        SamplingParams(temperature=0, dry_multiplier=2.0, dry_allowed_length=1, seed=4),
    ]

    def generators():
        return [make_generator(p.seed, torch.device("cpu")) for p in params]

    together, gens = [], generators()
    for _ in range(30):
        tokens, _ = sample_with_choices(logits, params, seen, gens)
        together.append(tokens)
    for row in range(4):
        gen = generators()[row]
        alone = [sample_with_choices(logits[row : row + 1], [params[row]], [seen[row]], [gen])[0][0] for _ in range(30)]
        assert alone == [tokens[row] for tokens in together]
