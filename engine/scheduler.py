"""Which requests run: a plain state machine (no torch), owned by the engine's loop thread.

Requests wait in arrival order. Each step admits from the front of the queue while the
batch has room, the KV cache stays within its limit, and the prompts admitted this step
fit the prefill budget. The KV cache is one rectangle, rows padded to the longest request,
so its size is (running requests) x (longest request). A request too large for the limits
on its own still runs, alone, so that nothing starves.
"""

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class Entry:
    request_id: str
    prompt_tokens: int
    # Prompt tokens plus the most new tokens it may produce.
    tokens: int


class Scheduler:
    def __init__(self, *, max_batch_size: int, max_tokens_in_flight: int, max_prefill_tokens: int = 2048):
        if min(max_batch_size, max_tokens_in_flight, max_prefill_tokens) < 1:
            raise ValueError("max_batch_size, max_tokens_in_flight and max_prefill_tokens must be at least 1")
        self.max_batch_size = max_batch_size
        self.max_tokens_in_flight = max_tokens_in_flight
        self.max_prefill_tokens = max_prefill_tokens
        self.waiting: OrderedDict[str, Entry] = OrderedDict()
        self.running: OrderedDict[str, Entry] = OrderedDict()

    @staticmethod
    def _footprint(entries) -> int:
        """The KV cache a batch of these requests may grow to: rows times the longest row."""
        entries = list(entries)
        return len(entries) * max((e.tokens for e in entries), default=0)

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    def add(self, request_id: str, *, prompt_tokens: int, new_tokens: int) -> None:
        if request_id in self.waiting or request_id in self.running:
            raise ValueError(f"request {request_id!r} is already scheduled")
        self.waiting[request_id] = Entry(request_id, prompt_tokens, prompt_tokens + new_tokens)

    def admit(self) -> list[str]:
        """Moves waiting requests into the batch while the limits allow; returns their ids."""
        admitted, prefill = [], 0
        while self.waiting and len(self.running) < self.max_batch_size:
            entry = next(iter(self.waiting.values()))
            if self.running or admitted:
                if self._footprint([*self.running.values(), entry]) > self.max_tokens_in_flight:
                    break
                if admitted and prefill + entry.prompt_tokens > self.max_prefill_tokens:
                    break
            del self.waiting[entry.request_id]
            self.running[entry.request_id] = entry
            admitted.append(entry.request_id)
            prefill += entry.prompt_tokens
        return admitted

    def finish(self, request_id: str) -> None:
        """Forgets a request, waiting or running; its room goes to the next admit()."""
        self.waiting.pop(request_id, None)
        self.running.pop(request_id, None)
