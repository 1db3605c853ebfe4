"""Choosing the next token: repetition penalty -> temperature -> top-k -> top-p -> sample.

The penalty comes first because it adjusts raw logits; applied after the filters it would
touch tokens that were already ruled out.
"""

import torch

from generation.engine.config import SamplingParams


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def next_token(logits: torch.Tensor, params: SamplingParams, seen_ids: torch.Tensor, generator: torch.Generator) -> int:
    """One token id from a 1-D tensor of logits over the vocabulary."""
    logits = logits.float()
    # Penalty: make every token already in the prompt or the output less likely.
    if params.repetition_penalty != 1.0 and seen_ids.numel():
        seen = logits.gather(0, seen_ids)
        seen = torch.where(seen < 0, seen * params.repetition_penalty, seen / params.repetition_penalty)
        logits = logits.scatter(0, seen_ids, seen)
    # Greedy: temperature 0 always takes the likeliest token.
    if params.temperature == 0:
        return int(torch.argmax(logits))
    # Temperature: below 1 sharpens the distribution, above 1 flattens it.
    logits = logits / params.temperature
    # Top-k: drop everything below the k-th likeliest token.
    if 0 < params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    # Top-p: keep the smallest set of tokens whose probabilities reach top_p.
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        beyond = (torch.cumsum(probs, dim=-1) - probs) > params.top_p
        logits = logits.scatter(0, order, sorted_logits.masked_fill(beyond, float("-inf")))
    # Sample from what is left, with the request's own generator so seeds reproduce.
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))
