"""Which requests run, and which prompt pieces are read next: a plain state machine (no
torch), owned by the engine's loop thread.

Requests wait in arrival order. Each step admits from the front of the queue while the
batch has room and the KV cache stays within its limit. The cache is paged (engine/
blocks.py), so a request counts for its own length only, prompt plus the most new tokens
it may write: memory is the sum of the lengths, and one long story does not shrink
everyone's batch. A request too large for the limit on its own still runs, alone, so that
nothing starves.

An admitted request first reads its prompt, in pieces: `reading_plan` hands out the
next pieces for one forward pass, within a token budget that the engine sizes by time,
so that the running streams, whose tokens go in the same pass, keep flowing while a long
prompt is read.
"""

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class Entry:
    request_id: str
    prompt_tokens: int
    # Prompt tokens plus the most new tokens it may produce.
    tokens: int
    # Prompt tokens whose keys and values are in the cache: found there, or read.
    read: int = 0

    @property
    def reading(self) -> bool:
        return self.read < self.prompt_tokens


class Scheduler:
    def __init__(self, *, max_batch_size: int, max_tokens_in_flight: int):
        if min(max_batch_size, max_tokens_in_flight) < 1:
            raise ValueError("max_batch_size and max_tokens_in_flight must be at least 1")
        self.max_batch_size = max_batch_size
        self.max_tokens_in_flight = max_tokens_in_flight
        self.waiting: OrderedDict[str, Entry] = OrderedDict()
        self.running: OrderedDict[str, Entry] = OrderedDict()

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    @property
    def tokens_in_flight(self) -> int:
        """The KV positions the running requests may grow to, together."""
        return sum(entry.tokens for entry in self.running.values())

    def add(self, request_id: str, *, prompt_tokens: int, new_tokens: int) -> None:
        if request_id in self.waiting or request_id in self.running:
            raise ValueError(f"request {request_id!r} is already scheduled")
        self.waiting[request_id] = Entry(request_id, prompt_tokens, prompt_tokens + new_tokens)

    def admit(self) -> list[str]:
        """Moves waiting requests into the batch while the limits allow; returns their ids."""
        admitted = []
        in_flight = self.tokens_in_flight
        while self.waiting and len(self.running) < self.max_batch_size:
            entry = next(iter(self.waiting.values()))
            if self.running and in_flight + entry.tokens > self.max_tokens_in_flight:
                break
            del self.waiting[entry.request_id]
            self.running[entry.request_id] = entry
            admitted.append(entry.request_id)
            in_flight += entry.tokens
        return admitted

    def mark_read(self, request_id: str, tokens: int) -> None:
        """Counts `tokens` more of the request's prompt as read (or found in the cache)."""
        entry = self.running[request_id]
        entry.read = min(entry.prompt_tokens, entry.read + tokens)

    @property
    def decoding(self) -> list[str]:
        """The running requests whose prompt is read: each gets a token per decode step."""
        return [entry.request_id for entry in self.running.values() if not entry.reading]

    def reading_plan(self, budget: int) -> list[tuple[str, int]]:
        """The prompt pieces to read in one forward pass, as (request id, tokens), `budget`
        tokens in all. The prompts with the least left go first: a short prompt is read in
        one piece beside a long one, which takes what the budget leaves."""
        left = sorted((e.prompt_tokens - e.read, e.request_id) for e in self.running.values() if e.reading)
        plan, budget = [], max(1, budget)
        for remaining, request_id in left:
            if budget <= 0:
                break
            plan.append((request_id, min(remaining, budget)))
            budget -= plan[-1][1]
        return plan

    def finish(self, request_id: str) -> None:
        """Forgets a request, waiting or running; its room goes to the next admit()."""
        self.waiting.pop(request_id, None)
        self.running.pop(request_id, None)
