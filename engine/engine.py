"""Engine: submit(), cancel(), and one decoding loop thread that owns the model.

Each step of the loop is schedule, run, update: admit waiting requests (prefill), decode
one token for every running request, then hand out text and finish what is done. Only
the loop thread touches the scheduler and the model; submit() and cancel() post to an
inbox that the loop drains at the start of every step, so a cancel takes effect within
one step. A request that has not started is ended by cancel() itself, at once: a long
prompt's prefill may hold the loop for a minute, and a writer who pressed Stop while
waiting behind it must not wait for it.
"""

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from engine import loader
from engine.config import EngineConfig, ModelSpec, SamplingParams
from engine.detokenize import IncrementalDetokenizer
from engine.events import Delta, Finished, Started
from engine.runner import Runner
from engine.sampling import make_generator, sample_with_choices
from engine.scheduler import Scheduler
from engine.stopping import StopText

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    request_id: str
    # The text to continue; the engine keeps its end when it is longer than the context.
    prompt: str
    params: SamplingParams
    # Token ids to continue instead of tokenizing `prompt` (generation/context.py makes
    # them, fitted to prompt_budget()); `prompt` then only names the request in logs.
    prompt_ids: tuple[int, ...] | None = None


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


def _refusal(error: str) -> Finished:
    return Finished(
        reason="error", text="", prompt_tokens=0, new_tokens=0, ttft_ms=None, tokens_per_s=None, error=error
    )


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
    # Set under the engine's lock: the loop took it into the batch, or its Finished was sent.
    admitted: bool = False
    ended: bool = False
    # Its row in the runner's KV cache while it runs, and how many positions it filled.
    row: int | None = None
    length: int = 0
    # The token sampled last, which the next decode step feeds.
    pending: int | None = None
    seen_ids: torch.Tensor | None = None
    generator: torch.Generator | None = None
    detokenizer: IncrementalDetokenizer | None = None
    stop: StopText | None = None
    new_tokens: int = 0
    started_at: float = 0.0
    first_token_at: float | None = None
    new_ids: list[int] = field(default_factory=list)
    # For each new token, the candidates it was drawn from, when the request records them.
    choices: list = field(default_factory=list)
    # ... and the text each one added (Finished.pieces).
    pieces: list[str] = field(default_factory=list)


class Engine:
    def __init__(self, loaded: loader.LoadedModel, config: EngineConfig | None = None):
        self.loaded = loaded
        self.config = config or EngineConfig()
        self.tokenizer = loaded.tokenizer
        self.context_window = min(self.config.context_window or loaded.context_window, loaded.context_window)
        self._runner = Runner(
            loaded.model, loaded.device, self.context_window, skinny_linears=self.config.skinny_linears
        )
        # The running requests by KV cache row: row i is self._rows[i].
        self._rows: list[_Live] = []
        self._scheduler = Scheduler(
            max_batch_size=self.config.max_batch_size,
            max_tokens_in_flight=self.config.max_tokens_in_flight,
            max_prefill_tokens=self.config.max_prefill_tokens,
        )
        self._inbox: queue.Queue = queue.Queue()
        # Every request from submit() until its Finished is sent, under the lock: what
        # cancel() looks in, and what makes a request id unique.
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()
        # The requests the loop has taken from its inbox, until it forgets them; the loop's own.
        self._requests: dict[str, _Live] = {}
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
        first, vocabulary = request.params.first_token, self.loaded.model.config.vocab_size
        if first is not None and not 0 <= first < vocabulary:
            handle._put(_refusal(f"first_token {first} is not a token of this model (0 to {vocabulary - 1})."))
            return handle
        prompt_ids, truncated, max_new = self._prompt_ids(request)
        live = _Live(
            request=request,
            handle=handle,
            prompt_ids=prompt_ids,
            truncated=truncated,
            max_new_tokens=max_new,
            submitted_at=time.monotonic(),
        )
        # Under the lock, as in cancel(): the inbox then holds a request's submit and cancel
        # in the order they were made, even when its id is used again at once.
        with self._lock:
            if request.request_id in self._live:
                handle._put(_refusal(f"request id {request.request_id!r} is already running"))
                return handle
            self._live[request.request_id] = live
            self._inbox.put(("submit", live))
        self._wake.set()
        return handle

    def cancel(self, request_id: str) -> None:
        """Ends a request that has not started at once; a running one stops within a step."""
        with self._lock:
            live = self._live.get(request_id)
            if live is not None and not live.admitted and not live.ended:
                live.ended = True
                del self._live[request_id]
                live.handle._put(self._finished(live, "cancelled"))
            self._inbox.put(("cancel", request_id))
        self._wake.set()

    def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=5)

    @property
    def _bos(self) -> int | None:
        return self.tokenizer.bos_token_id if getattr(self.tokenizer, "add_bos_token", False) else None

    def prompt_budget(self, max_new_tokens: int) -> int:
        """How many prompt tokens fit beside max_new_tokens of output in the context window."""
        max_new = min(max_new_tokens, self.context_window - 1)
        return self.context_window - max_new - (1 if self._bos is not None else 0)

    def _prompt_ids(self, request: Request) -> tuple[list[int], bool, int]:
        """The prompt's token ids, trimmed from the start to leave room for the output."""
        if request.prompt_ids is not None:
            ids = list(request.prompt_ids)
        else:
            ids = self.tokenizer(request.prompt, add_special_tokens=False)["input_ids"]
        bos = self._bos
        max_new = min(request.params.max_new_tokens, self.context_window - 1)
        room = self.prompt_budget(max_new)
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
        # The whole loop runs in inference mode: the KV cache is created and changed here.
        with torch.inference_mode():
            while not self._stopping:
                try:
                    self._drain_inbox()
                    if self._scheduler.idle:
                        if self._wake.wait(timeout=1.0) and self.config.gather_ms:
                            # Woken from idle: let a burst of requests arrive, so that
                            # they are prefilled together rather than one step apart.
                            time.sleep(self.config.gather_ms / 1000)
                        self._wake.clear()
                        continue
                    self._step()
                except Exception as exc:  # a bug or a broken model: fail what runs, keep the loop
                    log.exception("Engine step failed")
                    self._fail_running(str(exc))

    def _fail_running(self, error: str) -> None:
        rows, self._rows = self._rows, []
        for live in rows:
            live.row = None
        self._runner.cache.release()
        for request_id in list(self._scheduler.running):
            self._finish(self._requests[request_id], "error", error=error)

    def _drain_inbox(self) -> None:
        while True:
            try:
                verb, arg = self._inbox.get_nowait()
            except queue.Empty:
                return
            if verb == "submit":
                if arg.ended:  # cancelled before the loop saw it
                    continue
                self._requests[arg.request.request_id] = arg
                self._scheduler.add(
                    arg.request.request_id, prompt_tokens=len(arg.prompt_ids), new_tokens=arg.max_new_tokens
                )
            elif verb == "cancel" and arg in self._requests:
                live = self._requests[arg]
                if arg in self._scheduler.running:
                    live.cancelled = True
                else:
                    self._finish(live, "cancelled")

    def _step(self) -> None:
        # Schedule: admit waiting requests and prefill them together into new rows.
        admitted = [self._requests[request_id] for request_id in self._scheduler.admit()]
        with self._lock:
            for live in admitted:
                live.admitted = True
        # One that cancel() ended just before it was admitted.
        for live in [live for live in admitted if live.ended]:
            self._finish(live, "cancelled")
        admitted = [live for live in admitted if not live.ended]
        if admitted:
            self._prefill(admitted)
        for live in [live for live in self._rows if live.cancelled]:
            self._finish(live, "cancelled")
        if not self._rows:
            return
        # Run: one token for every running request, in one forward pass.
        running = list(self._rows)
        logits = self._runner.decode([live.pending for live in running], [live.length for live in running])
        # Update: sample each request's next token and hand out its text. Every row's
        # length counts the token just fed before any row is freed and refilled.
        for live in running:
            live.length += 1
            live.seen_ids = torch.cat([live.seen_ids, live.seen_ids.new_tensor([live.pending])])
        self._sample_and_take(running, logits)

    def _prefill(self, admitted: list[_Live]) -> None:
        first_row = len(self._rows)
        for live in admitted:
            params = live.request.params
            live.started_at = time.monotonic()
            live.generator = make_generator(params.seed, self.loaded.device)
            live.detokenizer = IncrementalDetokenizer(self.tokenizer, live.prompt_ids)
            live.stop = StopText(params.stop)
            live.seen_ids = torch.tensor(live.prompt_ids, dtype=torch.long, device=self.loaded.device)
            live.handle._put(Started(prompt_tokens=len(live.prompt_ids), truncated=live.truncated))
            live.row = len(self._rows)
            live.length = len(live.prompt_ids)
            self._rows.append(live)
        try:
            logits = self._runner.prefill(first_row, [live.prompt_ids for live in admitted])
        except Exception as exc:
            log.exception("Prefill failed")
            for live in reversed(admitted):
                self._finish(live, "error", error=str(exc))
            return
        self._sample_and_take(admitted, logits)

    def _sample_and_take(self, lives: list[_Live], logits: torch.Tensor) -> None:
        tokens, choices = sample_with_choices(
            logits,
            [live.request.params for live in lives],
            [live.seen_ids for live in lives],
            [live.generator for live in lives],
        )
        for live, token, candidates in zip(lives, tokens, choices, strict=True):
            first = live.request.params.first_token
            if first is not None and live.new_tokens == 0 and live.first_token_at is None:
                token = first  # the writer chose it; the candidates stay what the model weighed
            if live.request.params.record_choices:
                live.choices.append(tuple(candidates))
            self._take(live, token)

    def _take(self, live: _Live, token: int) -> None:
        """Hands out the text of a sampled token, then finishes the request or queues the
        token for the next step."""
        if live.first_token_at is None:
            live.first_token_at = time.monotonic()
        if token in self.loaded.eos_token_ids and not live.request.params.ignore_eos:
            self._finish(live, "eos")
            return
        live.new_tokens += 1
        live.new_ids.append(token)
        piece = live.detokenizer.push(token)
        if live.request.params.record_choices:
            live.pieces.append(piece)
        text = live.stop.feed(piece)
        if text:
            live.handle._put(Delta(text=text, tokens=1))
        if live.stop.stopped:
            self._finish(live, "stop")
        elif live.new_tokens >= live.max_new_tokens:
            self._finish(live, "length")
        else:
            live.pending = token

    def _finish(self, live: _Live, reason: str, error: str | None = None) -> None:
        """Sends the request's Finished, unless cancel() already has, and forgets it."""
        with self._lock:
            already, live.ended = live.ended, True
        finished = None if already else self._finished(live, reason, error)
        self._free_row(live)
        request_id = live.request.request_id
        self._scheduler.finish(request_id)
        del self._requests[request_id]
        if finished is not None:
            # Forgotten before the caller hears of the end, so that it may reuse the id.
            with self._lock:
                del self._live[request_id]
            live.handle._put(finished)

    def _finished(self, live: _Live, reason: str, error: str | None = None) -> Finished:
        """The request's Finished event; flushes the text its detokenizer and stop check hold."""
        if live.detokenizer is not None and live.stop is not None and not live.stop.stopped:
            held = live.detokenizer.flush()
            if held and live.pieces:
                live.pieces[-1] += held
            rest = live.stop.feed(held) + live.stop.finish()
            if rest:
                live.handle._put(Delta(text=rest, tokens=0))
        now = time.monotonic()
        decode_s = now - live.started_at if live.started_at else 0.0
        return Finished(
            reason=reason,
            text=live.stop.text if live.stop is not None else "",
            prompt_tokens=len(live.prompt_ids),
            new_tokens=live.new_tokens,
            ttft_ms=(live.first_token_at - live.submitted_at) * 1000 if live.first_token_at else None,
            tokens_per_s=live.new_tokens / decode_s if decode_s > 0 and live.new_tokens else None,
            error=error,
            token_ids=tuple(live.new_ids),
            choices=tuple(live.choices[: len(live.new_ids)]),
            pieces=tuple(live.pieces),
        )

    def _free_row(self, live: _Live) -> None:
        """Gives the request's row to the last running request, so rows stay packed."""
        if live.row is None:
            return
        last = self._rows.pop()
        if last is not live:
            self._runner.cache.move_row(last.row, live.row, last.length)
            last.row = live.row
            self._rows[live.row] = last
        live.row = None
        if not self._rows:
            # Nothing runs: give the cache's memory back until the next request.
            self._runner.cache.release()
