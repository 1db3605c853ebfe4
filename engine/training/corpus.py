"""A training corpus: documents (stories, uploaded text files) cut into examples of a
fixed number of tokens, some kept aside to measure perplexity on text the model does not
train on.

An empty document, or too little text for the sequence length asked for, is refused here
before any training starts, and said plainly. A wrong upload is refused earlier, on the
web side, by generation/training/uploads.py.
"""

from dataclasses import dataclass

import torch

from engine.errors import EMPTY_CORPUS, CorpusError


@dataclass(frozen=True)
class Document:
    name: str
    text: str


@dataclass
class Corpus:
    # [examples, sequence length] token ids.
    train: torch.Tensor
    heldout: torch.Tensor
    tokens: int
    documents: int


def build(tokenizer, documents: list[Document], *, sequence_length: int, heldout_percent: int) -> Corpus:
    """Tokenizes the documents (each ends with the end-of-text token, so the model learns
    where a story stops), joins them and cuts the stream into examples of
    `sequence_length` tokens. Every k-th example is held out, so both parts sample the
    whole corpus; there is at least one of each."""
    if not documents:
        raise CorpusError(EMPTY_CORPUS)
    for document in documents:
        if not document.text.strip():
            raise CorpusError(f"{document.name} has no text.")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for document in documents:
        stream += tokenizer(document.text, add_special_tokens=False)["input_ids"] + eos
    examples = len(stream) // sequence_length
    if examples < 2:
        raise CorpusError(
            f"The corpus has {len(stream)} tokens; it needs at least {2 * sequence_length} (two examples of "
            f"{sequence_length} tokens: one to train on, one held out). Add text or shorten the sequence length."
        )
    blocks = torch.tensor(stream[: examples * sequence_length], dtype=torch.long).view(examples, sequence_length)
    every = max(2, round(100 / heldout_percent))
    held = torch.zeros(examples, dtype=torch.bool)
    held[every - 1 :: every] = True
    if not held.any():
        held[-1] = True
    return Corpus(train=blocks[~held], heldout=blocks[held], tokens=len(stream), documents=len(documents))
