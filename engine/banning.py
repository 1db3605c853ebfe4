"""Banned phrases over streamed tokens: the continuation never contains one.

Text that could still become a banned phrase is held back, by whole tokens, until it is
clear either way, so a client never receives words that are then taken back. When a
phrase completes, the engine goes back to the token where it began, bans that token at
that place, and samples again from there (koboldcpp's phrase banning does the same).
Phrases match case-insensitively, anywhere in the text, inside longer words too.
"""


class BannedText:
    def __init__(self, phrases: tuple[str, ...]):
        self._phrases = tuple(dict.fromkeys(p.lower() for p in phrases if p))
        # (token index, its text, lowercased) of the tokens not yet released.
        self._held: list[tuple[int, str, str]] = []

    def push(self, index: int, piece: str) -> tuple[str, int, int | None]:
        """Adds the text of token `index`. Returns (text now safe to release, how many
        tokens it spans, None), or ("", 0, i) when a banned phrase completed: i is the
        token to go back to, the first whose text is part of the phrase (or, for a
        character split across tokens, the first of those tokens)."""
        self._held.append((index, piece, piece.lower()))
        text = "".join(lower for _, _, lower in self._held)
        ends = []
        for _, _, lower in self._held:
            ends.append((ends[-1] if ends else 0) + len(lower))
        found = [at for at in (text.find(p) for p in self._phrases) if at >= 0]
        if found:
            first = next(n for n, end in enumerate(ends) if end > min(found))
            # Tokens before it that added no text hold the first bytes of its character.
            while first > 0 and not self._held[first - 1][1]:
                first -= 1
            return "", 0, self._held[first][0]
        keep = self._could_begin_a_phrase(text)
        released = 0
        while released < len(self._held) and ends[released] <= keep:
            released += 1
        # A token that added no text stays with the one that completes its character.
        while released > 0 and not self._held[released - 1][1]:
            released -= 1
        out = "".join(piece for _, piece, _ in self._held[:released])
        del self._held[:released]
        return out, released, None

    def go_back(self, index: int) -> None:
        """Forgets the held tokens from `index` on (the engine samples them again)."""
        self._held = [entry for entry in self._held if entry[0] < index]

    def finish(self) -> str:
        """Releases what is held, at the end of the output."""
        out = "".join(piece for _, piece, _ in self._held)
        self._held = []
        return out

    def _could_begin_a_phrase(self, text: str) -> int:
        """Where the held text's longest ending that some phrase begins with starts (its
        length when none does)."""
        for start in range(len(text)):
            tail = text[start:]
            if any(phrase.startswith(tail) for phrase in self._phrases):
                return start
        return len(text)
