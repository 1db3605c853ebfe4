"""Engine: submit(), cancel(), and one decoding loop thread that owns the model.

Each step of the loop is schedule, run, update: admit waiting requests (prefill), decode
one token for every running request, then hand out text and finish what is done. Only
the loop thread touches the scheduler and the model; submit() and cancel() post to an
inbox that the loop drains at the start of every step, so a cancel takes effect within
one step.
"""

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from generation.engine import loader
from generation.engine.config import EngineConfig, ModelSpec, SamplingParams
from generation.engine.detokenize import IncrementalDetokenizer
from generation.engine.events import Delta, Finished, Started
from generation.engine.runner import Runner
from generation.engine.sampling import make_generator, next_token
from generation.engine.scheduler import Scheduler
from generation.engine.stopping import StopText

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    request_id: str
    # The text to continue; the engine keeps its end when it is longer than the context.
    prompt: str
    params: SamplingParams


class RequestHandle:
    """What a caller holds for one request: its events, in order, ending with Finished."""

    def __init__(self, request_id: str, coalesce_s: float):
        self.request_id = request_id
        self._events: queue.Queue = queue.Queue()
        self._coalesce_s = coalesce_s

    def _put(self, event) -> None:
        self._events.put(event)

    def events(self, idle_s: float = 0.25):
        """Yields Started, Delta and Finished events, and None after idle_s without one.

        Deltas that arrive within the coalescing window are merged into one, so a fast
        model does not flood a socket with one message per token.
        """
        pending: list[Delta] = []
        deadline = 0.0
        while True:
            timeout = max(0.0, deadline - time.monotonic()) if pending else idle_s
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                if pending:
                    yield _merge(pending)
                    pending = []
                else:
                    yield None
                continue
            if isinstance(event, Delta):
                if not pending:
                    deadline = time.monotonic() + self._coalesce_s
                pending.append(event)
                continue
            if pending:
                yield _merge(pending)
                pending = []
            yield event
            if isinstance(event, Finished):
                return


def _merge(deltas: list[Delta]) -> Delta:
    return Delta(text="".join(d.text for d in deltas), tokens=sum(d.tokens for d in deltas))


@dataclass
class _Live:
    """The loop's state for one request."""

    request: Request
    handle: RequestHandle
    prompt_ids: list[int]
    truncated: bool
    max_new_tokens: int
    submitted_at: float
    cancelled: bool = False
    cache: object = None
    logits: torch.Tensor | None = None
    seen_ids: torch.Tensor | None = None
    generator: torch.Generator | None = None
    detokenizer: IncrementalDetokenizer | None = None
    stop: StopText | None = None
    new_tokens: int = 0
    started_at: float = 0.0
    first_token_at: float | None = None
    new_ids: list[int] = field(default_factory=list)


class Engine:
    def __init__(self, loaded: loader.LoadedModel, config: EngineConfig | None = None):
        self.loaded = loaded
        self.config = config or EngineConfig()
        self.tokenizer = loaded.tokenizer
        self.context_window = min(self.config.context_window or loaded.context_window, loaded.context_window)
        self._runner = Runner(loaded.model, loaded.device)
        self._scheduler = Scheduler(
            max_batch_size=self.config.max_batch_size, max_tokens_in_flight=self.config.max_tokens_in_flight
        )
        self._inbox: queue.Queue = queue.Queue()
        self._live: dict[str, _Live] = {}
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"engine-{loaded.name}", daemon=True)
        self._thread.start()

    @classmethod
    def load(cls, spec: ModelSpec, config: EngineConfig | None = None) -> "Engine":
        return cls(loader.load(spec), config)

    @property
    def name(self) -> str:
        return self.loaded.name

    # -- the caller's side ------------------------------------------------------------

    def submit(self, request: Request) -> RequestHandle:
        """Queues a request; tokenizing happens here, in the caller's thread, not the loop's."""
        handle = RequestHandle(request.request_id, self.config.coalesce_ms / 1000)
        prompt_ids, truncated, max_new = self._prompt_ids(request)
        live = _Live(
            request=request,
            handle=handle,
            prompt_ids=prompt_ids,
            truncated=truncated,
            max_new_tokens=max_new,
            submitted_at=time.monotonic(),
        )
        self._inbox.put(("submit", live))
        self._wake.set()
        return handle

    def cancel(self, request_id: str) -> None:
        self._inbox.put(("cancel", request_id))
        self._wake.set()

    def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=5)

    def _prompt_ids(self, request: Request) -> tuple[list[int], bool, int]:
        """The prompt's token ids, trimmed from the start to leave room for the output."""
        ids = self.tokenizer(request.prompt, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id if getattr(self.tokenizer, "add_bos_token", False) else None
        max_new = min(request.params.max_new_tokens, self.context_window - 1)
        room = self.context_window - max_new - (1 if bos is not None else 0)
        truncated = len(ids) > room
        if truncated:
            ids = ids[len(ids) - room :]
        if bos is not None:
            ids = [bos, *ids]
        if not ids:
            # An empty story still needs one token to start from.
            start = self.tokenizer.bos_token_id
            ids = [start if start is not None else next(iter(self.loaded.eos_token_ids))]
        return ids, truncated, max_new

    # -- the loop -----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping:
            self._drain_inbox()
            if self._scheduler.idle:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            try:
                self._step()
            except Exception as exc:  # a bug or a broken model: fail every live request, keep the loop
                log.exception("Engine step failed")
                for request_id in list(self._scheduler.running):
                    self._finish(self._live[request_id], "error", error=str(exc))

    def _drain_inbox(self) -> None:
        while True:
            try:
                verb, arg = self._inbox.get_nowait()
            except queue.Empty:
                return
            if verb == "submit":
                self._live[arg.request.request_id] = arg
                self._scheduler.add(arg.request.request_id, len(arg.prompt_ids) + arg.max_new_tokens)
            elif verb == "cancel" and arg in self._live:
                live = self._live[arg]
                if arg in self._scheduler.running:
                    live.cancelled = True
                else:
                    self._finish(live, "cancelled")

    def _step(self) -> None:
        # Schedule: admit and prefill new requests.
        for request_id in self._scheduler.admit():
            self._prefill(self._live[request_id])
        # Run and update: one token for every running request.
        for request_id in list(self._scheduler.running):
            live = self._live[request_id]
            if live.cancelled:
                self._finish(live, "cancelled")
                continue
            try:
                self._advance(live)
            except Exception as exc:
                log.exception("Request %s failed", request_id)
                self._finish(live, "error", error=str(exc))

    def _prefill(self, live: _Live) -> None:
        live.started_at = time.monotonic()
        params = live.request.params
        live.generator = make_generator(params.seed, self.loaded.device)
        live.detokenizer = IncrementalDetokenizer(self.tokenizer, live.prompt_ids)
        live.stop = StopText(params.stop)
        live.seen_ids = torch.tensor(live.prompt_ids, dtype=torch.long, device=self.loaded.device)
        live.handle._put(Started(prompt_tokens=len(live.prompt_ids), truncated=live.truncated))
        live.logits, live.cache = self._runner.prefill(live.prompt_ids)

    def _advance(self, live: _Live) -> None:
        """Samples a token from the last logits, hands out its text, and runs it if going on."""
        token = next_token(live.logits, live.request.params, live.seen_ids, live.generator)
        if live.first_token_at is None:
            live.first_token_at = time.monotonic()
        if token in self.loaded.eos_token_ids and not live.request.params.ignore_eos:
            self._finish(live, "eos")
            return
        live.new_tokens += 1
        live.new_ids.append(token)
        text = live.stop.feed(live.detokenizer.push(token))
        if text:
            live.handle._put(Delta(text=text, tokens=1))
        if live.stop.stopped:
            self._finish(live, "stop")
            return
        if live.new_tokens >= live.max_new_tokens:
            self._finish(live, "length")
            return
        live.seen_ids = torch.cat([live.seen_ids, live.seen_ids.new_tensor([token])])
        live.logits, live.cache = self._runner.decode(token, live.cache)

    def _finish(self, live: _Live, reason: str, error: str | None = None) -> None:
        if live.detokenizer is not None and live.stop is not None and not live.stop.stopped:
            rest = live.stop.feed(live.detokenizer.flush()) + live.stop.finish()
            if rest:
                live.handle._put(Delta(text=rest, tokens=0))
        now = time.monotonic()
        decode_s = now - live.started_at if live.started_at else 0.0
        live.handle._put(
            Finished(
                reason=reason,
                text=live.stop.text if live.stop is not None else "",
                prompt_tokens=len(live.prompt_ids),
                new_tokens=live.new_tokens,
                ttft_ms=(live.first_token_at - live.submitted_at) * 1000 if live.first_token_at else None,
                tokens_per_s=live.new_tokens / decode_s if decode_s > 0 and live.new_tokens else None,
                error=error,
                token_ids=tuple(live.new_ids),
            )
        )
        live.cache = live.logits = None
        self._scheduler.finish(live.request.request_id)
        self._live.pop(live.request.request_id, None)
