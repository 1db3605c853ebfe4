"""Choosing the next tokens, in this order: repetition penalty -> DRY -> temperature ->
top-k -> top-p -> min-p -> XTC -> sample (the engine adds a request's word bias and its
banned tokens to the logits before this).

One call samples every row of a decode step: the filters run on the whole batch at once
(DRY and XTC row by row, for the rows that ask for them), and each row then draws from its
own seeded generator, so a request's text does not depend on what else is in the batch.
The penalties come first because they adjust raw logits; applied after the filters they
would touch tokens that were already ruled out. A greedy row (temperature 0) takes the
likeliest token after the penalties. min-p and XTC read the distribution top-k and top-p
left. XTC's coin is drawn from the row's own generator, so a seed still gives the same
text.
"""

import torch

from engine.config import SamplingParams


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


# A candidate the model weighed for one token: (token id, probability).
Candidate = tuple[int, float]


# The longest run DRY follows back: its penalty has long outgrown any logit by then, and a
# text that repeats one token for thousands would otherwise cost a step that many passes.
DRY_LONGEST_RUN = 64


def sample_with_choices(
    logits: torch.Tensor,
    params: list[SamplingParams],
    seen_ids: list[torch.Tensor],
    generators: list[torch.Generator],
    breakers: list[torch.Tensor | None] | None = None,
) -> tuple[list[int], list[list[Candidate]]]:
    """One token id for each row of `logits` ([rows, vocabulary]), and for each row whose
    params ask for `record_choices` candidates the likeliest ones of the distribution the
    token was drawn from, after every filter (for a greedy row, the penalized softmax
    whose top it takes), likeliest first; an empty list for the other rows.

    `seen_ids` are each row's tokens so far, prompt and output, in order. `breakers` are,
    for each row with DRY on, a boolean mask over the vocabulary of the tokens its runs
    stop at (`breaker_mask`)."""
    choices: list[list[Candidate]] = [[] for _ in params]
    logits = logits.float().clone()
    vocabulary = logits.shape[-1]
    for row, (p, seen) in enumerate(zip(params, seen_ids, strict=True)):
        # Penalty: make every token already in the prompt or the output less likely.
        if p.repetition_penalty != 1.0 and seen.numel():
            scores = logits[row].gather(0, seen)
            scores = torch.where(scores < 0, scores * p.repetition_penalty, scores / p.repetition_penalty)
            logits[row].scatter_(0, seen, scores)
        if p.dry_multiplier > 0:
            logits[row] -= dry_penalties(seen, p, breakers[row] if breakers else None, vocabulary)
    # Greedy: temperature 0 takes the likeliest token; these answers stand for those rows.
    tokens = logits.argmax(dim=-1).tolist()
    for row, p in enumerate(params):
        if p.temperature == 0 and p.record_choices:
            choices[row] = _top(torch.softmax(logits[row], dim=-1), None, p.record_choices)
    rows = [row for row, p in enumerate(params) if p.temperature > 0]
    if not rows:
        return tokens, choices
    chosen = [params[row] for row in rows]
    # Temperature: below 1 sharpens the distribution, above 1 flattens it.
    temperatures = logits.new_tensor([p.temperature for p in chosen])
    scaled = logits[rows] / temperatures[:, None]
    # Top-k: the k likeliest tokens of each row, sorted; 0 keeps them all.
    ks = [p.top_k if 0 < p.top_k < vocabulary else vocabulary for p in chosen]
    values, indices = torch.topk(scaled, max(ks), dim=-1)
    # Built on the logits' device: a mask made on the CPU fails beside CUDA logits.
    ranks = torch.arange(values.shape[-1], device=values.device)
    values = values.masked_fill(ranks[None, :] >= torch.tensor(ks, device=values.device)[:, None], float("-inf"))
    # Top-p: keep the smallest set of tokens whose probabilities reach top_p.
    probs = torch.softmax(values, dim=-1)
    top_p = logits.new_tensor([p.top_p for p in chosen])
    values = values.masked_fill((torch.cumsum(probs, dim=-1) - probs) > top_p[:, None], float("-inf"))
    probs = torch.softmax(values, dim=-1)
    # Min-p: keep the tokens at least min_p as likely as the likeliest (sorted: the first).
    min_p = logits.new_tensor([p.min_p for p in chosen])
    if bool((min_p > 0).any()):
        values = values.masked_fill(probs < min_p[:, None] * probs[:, :1], float("-inf"))
        probs = torch.softmax(values, dim=-1)
    # XTC: when the row's coin says so, leave out the likely tokens but the least likely of them.
    for position, row in enumerate(rows):
        p = params[row]
        if p.xtc_probability > 0:
            coin = torch.rand(1, generator=generators[row], device=generators[row].device)
            # Tokens already ruled out (probability 0) never count, even at a threshold of 0.
            likely = int(((probs[position] > 0) & (probs[position] >= p.xtc_threshold)).sum())
            if float(coin) < p.xtc_probability and likely >= 2:
                values[position, : likely - 1] = float("-inf")
                probs[position] = torch.softmax(values[position], dim=-1)
    # Sample: each row from its own generator, so seeds reproduce whatever the batch.
    for position, row in enumerate(rows):
        # Over the row's own k columns: multinomial draws a number for each column it is
        # given, so a batch-mate's wider top-k would change what this row's seed gives.
        pick = torch.multinomial(probs[position, : ks[position]], 1, generator=generators[row])
        tokens[row] = int(indices[position, pick])
        # Record: the row's filtered distribution is already sorted, likeliest first.
        if params[row].record_choices:
            choices[row] = _top(probs[position], indices[position], params[row].record_choices)
    return tokens, choices


def _top(probs: torch.Tensor, indices: torch.Tensor | None, count: int) -> list[Candidate]:
    """The `count` likeliest of a distribution with any probability; `indices` maps
    positions to token ids when `probs` is not over the whole vocabulary."""
    values, positions = torch.topk(probs, min(count, probs.shape[-1]))
    ids = positions if indices is None else indices[positions]
    return [(int(i), float(v)) for i, v in zip(ids.tolist(), values.tolist(), strict=True) if v > 0]


def breaker_mask(token_texts: list[str], breakers: tuple[str, ...], device: torch.device) -> torch.Tensor:
    """The tokens whose text holds one of `breakers`, as a mask over the vocabulary."""
    return torch.tensor([any(b in text for b in breakers) for text in token_texts], dtype=torch.bool, device=device)


def dry_penalties(
    seen: torch.Tensor, p: SamplingParams, breakers: torch.Tensor | None, vocabulary: int
) -> torch.Tensor:
    """DRY's penalty for each token of the vocabulary ([vocabulary]), from the row's tokens
    so far. Wherever the last token appeared before, the run of tokens ending there that
    matches the run ending the text is measured (the last token counts; a run never
    crosses a breaker): the token that came next there would repeat that run. A token
    whose longest such run is at least `dry_allowed_length` loses
    dry_multiplier x dry_base ^ (that run - dry_allowed_length)."""
    penalties = torch.zeros(vocabulary, device=seen.device)
    length = seen.numel()
    if length < 2:
        return penalties
    if breakers is None:
        breakers = torch.zeros(vocabulary, dtype=torch.bool, device=seen.device)
    last = seen[-1]
    if bool(breakers[last]):
        return penalties
    # Earlier places of the last token, and what came after each.
    places = (seen[:-1] == last).nonzero().flatten()
    followers = seen[places + 1]
    keep = ~breakers[followers]
    places, followers = places[keep], followers[keep]
    runs = torch.ones_like(places)
    going = torch.ones_like(places, dtype=torch.bool)
    for back in range(1, min(DRY_LONGEST_RUN, length - 1)):
        earlier = places - back
        going &= earlier >= 0
        if not bool(going.any()):
            break
        theirs = seen[earlier.clamp(min=0)]
        ours = seen[length - 1 - back]
        going &= (theirs == ours) & ~breakers[theirs]
        runs += going
    counted = runs >= p.dry_allowed_length
    amounts = p.dry_multiplier * p.dry_base ** (runs[counted] - p.dry_allowed_length).float()
    return penalties.scatter_reduce(0, followers[counted], amounts, "amax", include_self=True)
