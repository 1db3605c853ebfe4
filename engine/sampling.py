"""Choosing the next tokens: repetition penalty -> temperature -> top-k -> top-p -> sample.

One call samples every row of a decode step: the filters run on the whole batch at once,
and each row then draws from its own seeded generator, so a request's text does not
depend on what else is in the batch. The penalty comes first because it adjusts raw
logits; applied after the filters it would touch tokens that were already ruled out.
"""

import torch

from engine.config import SamplingParams


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


# A candidate the model weighed for one token: (token id, probability).
Candidate = tuple[int, float]


def sample_with_choices(
    logits: torch.Tensor,
    params: list[SamplingParams],
    seen_ids: list[torch.Tensor],
    generators: list[torch.Generator],
) -> tuple[list[int], list[list[Candidate]]]:
    """One token id for each row of `logits` ([rows, vocabulary]), and for each row whose
    params ask for `record_choices` candidates the likeliest ones of the distribution the
    token was drawn from, after every filter (for a greedy row, the penalized softmax
    whose top it takes), likeliest first; an empty list for the other rows."""
    choices: list[list[Candidate]] = [[] for _ in params]
    logits = logits.float().clone()
    vocabulary = logits.shape[-1]
    # Penalty: make every token already in the prompt or the output less likely.
    for row, (p, seen) in enumerate(zip(params, seen_ids, strict=True)):
        if p.repetition_penalty != 1.0 and seen.numel():
            scores = logits[row].gather(0, seen)
            scores = torch.where(scores < 0, scores * p.repetition_penalty, scores / p.repetition_penalty)
            logits[row].scatter_(0, seen, scores)
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
    # Sample: each row from its own generator, so seeds reproduce whatever the batch.
    probs = torch.softmax(values, dim=-1)
    for position, row in enumerate(rows):
        pick = torch.multinomial(probs[position], 1, generator=generators[row])
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
