"""Choosing the next tokens: repetition penalty -> temperature -> top-k -> top-p -> sample.

One call samples every row of a decode step: the filters run on the whole batch at once,
and each row then draws from its own seeded generator, so a request's text does not
depend on what else is in the batch. The penalty comes first because it adjusts raw
logits; applied after the filters it would touch tokens that were already ruled out.
"""

import torch

from generation.engine.config import SamplingParams


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def sample(
    logits: torch.Tensor,
    params: list[SamplingParams],
    seen_ids: list[torch.Tensor],
    generators: list[torch.Generator],
) -> list[int]:
    """One token id for each row of `logits` ([rows, vocabulary])."""
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
    rows = [row for row, p in enumerate(params) if p.temperature > 0]
    if not rows:
        return tokens
    chosen = [params[row] for row in rows]
    # Temperature: below 1 sharpens the distribution, above 1 flattens it.
    temperatures = logits.new_tensor([p.temperature for p in chosen])
    scaled = logits[rows] / temperatures[:, None]
    # Top-k: the k likeliest tokens of each row, sorted; 0 keeps them all.
    ks = [p.top_k if 0 < p.top_k < vocabulary else vocabulary for p in chosen]
    values, indices = torch.topk(scaled, max(ks), dim=-1)
    ranks = torch.arange(values.shape[-1])
    values = values.masked_fill(ranks[None, :] >= torch.tensor(ks)[:, None], float("-inf"))
    # Top-p: keep the smallest set of tokens whose probabilities reach top_p.
    probs = torch.softmax(values, dim=-1)
    top_p = logits.new_tensor([p.top_p for p in chosen])
    values = values.masked_fill((torch.cumsum(probs, dim=-1) - probs) > top_p[:, None], float("-inf"))
    # Sample: each row from its own generator, so seeds reproduce whatever the batch.
    probs = torch.softmax(values, dim=-1)
    for position, row in enumerate(rows):
        pick = torch.multinomial(probs[position], 1, generator=generators[row])
        tokens[row] = int(indices[position, pick])
    return tokens


def next_token(logits: torch.Tensor, params: SamplingParams, seen_ids: torch.Tensor, generator: torch.Generator) -> int:
    """One token id from a 1-D tensor of logits over the vocabulary."""
    return sample(logits[None, :], [params], [seen_ids], [generator])[0]
