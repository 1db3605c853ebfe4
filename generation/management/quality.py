"""How well a model predicts one fixed passage of English prose: its perplexity.

The passage is the first chapter of *Alice's Adventures in Wonderland* (public domain),
shipped in texts/. A lower perplexity is better; the same weights in another format should
come within a few percent of float32's.
"""

import math
from pathlib import Path

import torch

PASSAGE = Path(__file__).with_name("texts") / "alice_chapter_1.txt"
# Tokens read at once; a model with a shorter window reads in windows of its own.
WINDOW = 1024


def passage() -> str:
    """The chapter's text, without the line that says where it comes from."""
    return PASSAGE.read_text(encoding="utf-8").split("\n\n", 1)[1]


@torch.inference_mode()
def perplexity(model, tokenizer, text: str, *, window: int = WINDOW) -> float:
    """exp(mean negative log-likelihood) of every token of `text` after the first, read in
    windows of `window` tokens that overlap by half, each token scored once with at least
    half a window before it (or all there is)."""
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    device = next(model.parameters()).device
    total, counted, start = 0.0, 0, 0
    stride = window // 2
    while True:
        end = min(start + window, len(ids))
        chunk = ids[start:end].to(device)[None]
        logits = model(input_ids=chunk).logits[0].float()
        # Token i is predicted by the logits at i - 1; score those not scored before.
        first = 1 if start == 0 else window - stride
        losses = torch.nn.functional.cross_entropy(logits[first - 1 : -1], chunk[0, first:], reduction="sum")
        total += float(losses)
        counted += chunk.shape[1] - first
        if end == len(ids):
            break
        start += stride
    return math.exp(total / counted)
