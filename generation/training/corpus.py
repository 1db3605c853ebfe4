"""A training corpus: documents (stories, uploaded text files) cut into examples of a
fixed number of tokens, some kept aside to measure perplexity on text the model does not
train on.

Everything that can be wrong with a corpus is found here, before any training starts, and
said plainly: a file that is not UTF-8 text, an empty document, too little text for the
sequence length asked for.
"""

from dataclasses import dataclass

import torch

# Uploads larger than this are refused (a plain-text novel is about 1 MB).
MAX_FILE_BYTES = 20 * 1024 * 1024


# What a job with neither stories nor files is told, wherever it is set up.
EMPTY = "The corpus is empty: choose stories or upload .txt files."


class CorpusError(ValueError):
    pass


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


def read_text_file(name: str, data: bytes) -> str:
    """An uploaded file's text, or CorpusError saying what is wrong with it."""
    if len(data) > MAX_FILE_BYTES:
        raise CorpusError(
            f"{name} is {len(data) / 2**20:.1f} MiB; a file may hold at most {MAX_FILE_BYTES // 2**20} MiB."
        )
    if b"\x00" in data:
        raise CorpusError(f"{name} is not a plain-text file (it holds NUL bytes).")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{name} is not UTF-8 text (byte {data[exc.start]:#04x} at position {exc.start}); save it as UTF-8."
        ) from None
    if not text.strip():
        raise CorpusError(f"{name} is empty.")
    return text


def build(tokenizer, documents: list[Document], *, sequence_length: int, heldout_percent: int) -> Corpus:
    """Tokenizes the documents (each ends with the end-of-text token, so the model learns
    where a story stops), joins them and cuts the stream into examples of
    `sequence_length` tokens. Every k-th example is held out, so both parts sample the
    whole corpus; there is at least one of each."""
    if not documents:
        raise CorpusError(EMPTY)
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
