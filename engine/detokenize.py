"""Incremental detokenization: text deltas that never split a UTF-8 character.

A byte-level BPE token can hold part of a character (an emoji is often two or three
tokens). Each new token is decoded together with the few before it; text is released
only once it no longer ends in U+FFFD, the mark of an incomplete character. The deltas
join to exactly `tokenizer.decode(all generated ids)` for byte-level tokenizers.
"""

_CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    def __init__(self, tokenizer, prompt_ids: list[int], *, skip_special_tokens: bool = True):
        self._tokenizer = tokenizer
        # Generated text leaves special tokens out; Inspect spells every token of a passage.
        self._skip_special = skip_special_tokens
        # A few prompt tokens give the first output token its context (some tokenizers
        # drop a leading space when decoding a sequence that starts with it).
        self._ids = list(prompt_ids[-_CONTEXT_TOKENS:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip_special)

    def push(self, token_id: int) -> str:
        """The text that `token_id` completes; "" while a character is still incomplete."""
        self._ids.append(token_id)
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        text = self._decode(self._ids[self._prefix_offset :])
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
            return text[len(prefix) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held back, at the end of the output."""
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return text[len(prefix) :] if text.startswith(prefix) else ""
