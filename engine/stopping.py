"""Stop sequences over streamed text.

Text that might be the start of a stop sequence is held back until it is clear either
way, so a client never receives words that the stop then takes back.
"""


class StopText:
    def __init__(self, stops: tuple[str, ...]):
        self._stops = tuple(s for s in stops if s)
        self.text = ""  # everything decoded so far
        self._released = 0  # how much of it has been handed out
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Adds decoded text; returns what is safe to release now."""
        self.text += delta
        hits = [i for i in (self.text.find(s, self._released) for s in self._stops) if i >= 0]
        if hits:
            self.stopped = True
            self.text = self.text[: min(hits)]
            return self._release(len(self.text))
        return self._release(len(self.text) - self._held_back())

    def finish(self) -> str:
        """Releases the rest at the end of the output."""
        return self._release(len(self.text))

    def _held_back(self) -> int:
        tail = self.text[self._released :]
        longest = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(tail)), longest, -1):
                if tail.endswith(stop[:k]):
                    longest = k
                    break
        return longest

    def _release(self, upto: int) -> str:
        out = self.text[self._released : upto]
        self._released = max(self._released, upto)
        return out
