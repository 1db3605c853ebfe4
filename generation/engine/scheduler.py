"""Which requests run: a plain state machine (no torch), owned by the engine's loop thread.

Requests wait in arrival order and are admitted while the batch has room and the tokens
in flight (prompt plus new tokens of every running request) stay within the limit. A
request larger than the limit on its own still runs, alone, so that nothing starves.
"""

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class Entry:
    request_id: str
    # Prompt tokens plus the most new tokens it may produce.
    tokens: int


class Scheduler:
    def __init__(self, *, max_batch_size: int, max_tokens_in_flight: int):
        if max_batch_size < 1 or max_tokens_in_flight < 1:
            raise ValueError("max_batch_size and max_tokens_in_flight must be at least 1")
        self.max_batch_size = max_batch_size
        self.max_tokens_in_flight = max_tokens_in_flight
        self.waiting: OrderedDict[str, Entry] = OrderedDict()
        self.running: OrderedDict[str, Entry] = OrderedDict()

    @property
    def tokens_in_flight(self) -> int:
        return sum(entry.tokens for entry in self.running.values())

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    def add(self, request_id: str, tokens: int) -> None:
        if request_id in self.waiting or request_id in self.running:
            raise ValueError(f"request {request_id!r} is already scheduled")
        self.waiting[request_id] = Entry(request_id, tokens)

    def admit(self) -> list[str]:
        """Moves waiting requests into the batch while the limits allow; returns their ids."""
        admitted = []
        while self.waiting and len(self.running) < self.max_batch_size:
            entry = next(iter(self.waiting.values()))
            if self.running and self.tokens_in_flight + entry.tokens > self.max_tokens_in_flight:
                break
            del self.waiting[entry.request_id]
            self.running[entry.request_id] = entry
            admitted.append(entry.request_id)
        return admitted

    def finish(self, request_id: str) -> None:
        """Forgets a request, waiting or running; its room goes to the next admit()."""
        self.waiting.pop(request_id, None)
        self.running.pop(request_id, None)

    def position(self, request_id: str) -> int | None:
        """Requests ahead of this one (0 when it is running); None when it is unknown."""
        if request_id in self.running:
            return 0
        for index, waiting_id in enumerate(self.waiting):
            if waiting_id == request_id:
                return len(self.running) + index
        return None
