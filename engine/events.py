from dataclasses import dataclass


@dataclass(frozen=True)
class Started:
    """The request left the queue: its prompt was tokenized (and trimmed to fit), and is
    read from here on."""

    prompt_tokens: int
    # True when the oldest part of the prompt was dropped to fit the context window.
    truncated: bool


@dataclass(frozen=True)
class Reading:
    """How far the prompt is read: `done` of its `total` tokens have keys and values in the
    cache (found there, or read); sent between the pieces of a prompt read in several."""

    done: int
    total: int


@dataclass(frozen=True)
class Delta:
    """New text since the last delta; never a broken UTF-8 character."""

    text: str
    tokens: int


@dataclass(frozen=True)
class Finished:
    # One of "length", "stop", "eos", "cancelled", "error".
    reason: str
    # The whole output; equals the joined deltas.
    text: str
    prompt_tokens: int
    new_tokens: int
    ttft_ms: float | None
    tokens_per_s: float | None
    error: str | None = None
    # The generated token ids, EOS excluded.
    token_ids: tuple[int, ...] = ()
    # When the request recorded choices: for each of token_ids, the likeliest candidates
    # ((token id, probability), likeliest first) of the distribution it was drawn from.
    choices: tuple[tuple[tuple[int, float], ...], ...] = ()
    # With choices: the text each of token_ids added to the output, in the order the
    # detokenizer released it ("" for a token that left a character incomplete; the one
    # that completes it carries the whole character). Joined, they start with `text`
    # (a stop sequence cuts `text` short).
    pieces: tuple[str, ...] = ()
