"""Engine: submit(), cancel(), and one decoding loop thread that owns the model.

Each step of the loop is schedule, run, update: admit waiting requests, decode one token
for every request whose prompt is read, read the next pieces of the prompts that are not,
then hand out text and finish what is done. Only the loop thread touches the scheduler
and the model; submit() and cancel() post to an inbox that the loop drains at the start
of every step, so a cancel takes effect within one step. A request that has not started
is ended by cancel() itself, at once.

Work already done is not done again: the KV cache is kept in blocks known by the tokens
they hold (engine/blocks.py), so a retry, or a prompt that only grew at its end, or one
that continues a finished request's own output, reads only the tokens past what is
cached. And a long prompt is read in pieces sized by time (`reading_ms`), between the
decode steps of the running requests, so that their streams keep flowing while it is
read; the request reports how far it is (Reading).
"""

import bisect
import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from engine import loader
from engine.banning import BannedText
from engine.blocks import BlockPool, blocks_for, digests
from engine.config import BLOCK_SIZE, CPU_CONTEXT_WINDOW, EngineConfig, ModelSpec, SamplingParams
from engine.detokenize import IncrementalDetokenizer
from engine.events import Delta, Finished, Reading, Started
from engine.runner import Runner
from engine.sampling import breaker_mask, make_generator, sample_with_choices
from engine.scheduler import Scheduler
from engine.stopping import StopText
from engine.threads import release_openmp_threads

log = logging.getLogger(__name__)

# What reading a prompt piece costs grows with its position, as each token attends over
# all before it: about (1 + position / _ATTENTION_SPAN) times the cost at position 0.
# SmolLM2-135M on 2 CPU cores: 1.7 ms a token at 0, 3.5 at 2,000, 6.7 at 5,000. The cost
# is measured again after every piece, so this only has to be right from one to the next.
_ATTENTION_SPAN = 2048
# The first piece read before the engine has timed one.
_FIRST_PIECE_TOKENS = 64
# How often one request may go back over a banned phrase before it ends with an error: each
# time bans one more token at one place, so this is never reached unless nearly every
# likely continuation is banned.
MAX_GOING_BACK = 500


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
    # Its block table while it runs, and how many positions of it hold keys and values.
    blocks: list[int] = field(default_factory=list)
    length: int = 0
    # The digests of its first full blocks (engine/blocks.py), and how many of its blocks
    # the pool knows by theirs.
    digests: list[bytes] = field(default_factory=list)
    remembered: int = 0
    # The token sampled last, which the next decode step feeds.
    pending: int | None = None
    seen_ids: torch.Tensor | None = None
    # The tokens DRY's runs stop at, when the request asks for DRY.
    breakers: torch.Tensor | None = None
    # The request's word bias: token ids and what is added to their logits.
    bias: tuple[torch.Tensor, torch.Tensor] | None = None
    # The tokens whose own text holds a banned phrase whole: never drawn.
    holding: torch.Tensor | None = None
    # Its banned phrases' watch over the output, and the tokens banned at each place of
    # the output after a phrase completed there; how often it went back.
    banned: BannedText | None = None
    bans: dict[int, set[int]] = field(default_factory=dict)
    went_back: int = 0
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
        own = loaded.context_window
        default = min(own, CPU_CONTEXT_WINDOW) if loaded.device.type == "cpu" else own
        self.context_window = min(self.config.context_window or default, own)
        config = self.config
        cache_blocks = config.prefix_cache_tokens // BLOCK_SIZE
        # Room for what the scheduler lets run (each request may round up to a block),
        # for one request as long as the window, and for the cached prefixes.
        in_flight = blocks_for(max(config.max_tokens_in_flight, self.context_window)) + config.max_batch_size
        self._pool = BlockPool(blocks=1 + in_flight + cache_blocks, cache_blocks=cache_blocks)
        self._runner = Runner(
            loaded.model,
            loaded.device,
            self.context_window,
            blocks=self._pool.blocks,
            skinny_linears=config.skinny_linears,
        )
        self._scheduler = Scheduler(
            max_batch_size=config.max_batch_size, max_tokens_in_flight=config.max_tokens_in_flight
        )
        # Seconds per prompt token read at position 0, as last measured (None: not yet),
        # and seconds per pass with no prompt in it (a decode step).
        self._read_cost: float | None = None
        self._step_cost = 0.0
        self._inbox: queue.Queue = queue.Queue()
        # Every request from submit() until its Finished is sent, under the lock: what
        # cancel() looks in, and what makes a request id unique.
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()
        # Each token's text, and DRY's breaker masks by their strings (_breakers).
        self._token_texts: list[str] | None = None
        # The same, lowercased and joined, for finding banned phrases (_holding).
        self._joined: tuple[str, list[int]] | None = None
        self._breaker_masks: dict[tuple[str, ...], torch.Tensor] = {}
        self._breakers_lock = threading.Lock()
        # The requests the loop has taken from its inbox, until it forgets them; the loop's own.
        self._requests: dict[str, _Live] = {}
        self._wake = threading.Event()
        self._stopping = False
        # The model was loaded in this thread: its OpenMP team would halve the speed of the
        # loop's own (engine/threads.py).
        release_openmp_threads()
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
        breakers = None
        if request.params.dry_multiplier > 0:
            breakers = self._breakers(request.params.dry_sequence_breakers)
        bias = self._bias(request.params.bias) if request.params.bias else None
        holding = self._holding(request.params.banned) if request.params.banned else None
        live = _Live(
            request=request,
            handle=handle,
            prompt_ids=prompt_ids,
            truncated=truncated,
            max_new_tokens=max_new,
            submitted_at=time.monotonic(),
            breakers=breakers,
            bias=bias,
            holding=holding,
            banned=BannedText(request.params.banned) if request.params.banned else None,
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

    def cache_stats(self) -> dict:
        """The KV cache in token positions: held by running requests, kept for prefixes that
        may come again (and their budget), and how many prompt tokens were found there.

        Read without the loop's lock, from the worker's reporting thread: a figure may be
        a block behind the other, which a report shown every few seconds can bear."""
        pool = self._pool
        return {
            "held_tokens": pool.held * BLOCK_SIZE,
            "cached_tokens": pool.cached * BLOCK_SIZE,
            "budget_tokens": pool.cache_blocks * BLOCK_SIZE,
            "prompt_tokens": pool.prompt_tokens,
            "found_tokens": pool.found_tokens,
        }

    @property
    def _bos(self) -> int | None:
        return self.tokenizer.bos_token_id if getattr(self.tokenizer, "add_bos_token", False) else None

    def cached_tokens(self, ids: list[int]) -> int:
        """How many of a prompt's first tokens a request would find in the prefix cache now
        (whole blocks; the last token is always read, as _start does)."""
        return self._pool.cached_run(digests(ids[: len(ids) - 1])) * BLOCK_SIZE

    def prompt_budget(self, max_new_tokens: int) -> int:
        """How many prompt tokens fit beside max_new_tokens of output in the context window."""
        max_new = min(max_new_tokens, self.context_window - 1)
        return self.context_window - max_new - (1 if self._bos is not None else 0)

    def _breakers(self, breakers: tuple[str, ...]) -> torch.Tensor:
        """DRY's breaker mask for these strings, made once for each set."""
        texts = self._vocabulary_texts()
        with self._breakers_lock:
            if breakers not in self._breaker_masks:
                self._breaker_masks[breakers] = breaker_mask(texts, breakers, self.loaded.device)
            return self._breaker_masks[breakers]

    def _holding(self, phrases: tuple[str, ...]) -> torch.Tensor:
        """The tokens whose text holds one of the phrases whole, in any case: drawing one
        would complete the phrase at once, so they are never drawn, and going back is left
        for phrases that span tokens."""
        joined, starts = self._vocabulary_joined()
        ids = set()
        # A phrase holding the separator could only be found across two tokens.
        for phrase in {phrase.lower() for phrase in phrases if phrase.strip() and "\0" not in phrase}:
            at = joined.find(phrase)
            while at >= 0:
                ids.add(bisect.bisect_right(starts, at) - 1)
                at = joined.find(phrase, at + 1)
        return torch.tensor(sorted(ids), dtype=torch.long, device=self.loaded.device)

    def _vocabulary_joined(self) -> tuple[str, list[int]]:
        """Every token's text, lowercased, joined by a character no text holds, and where
        each begins: a phrase found in it lies within the token it begins in."""
        with self._breakers_lock:
            if self._joined is None:
                lowered = [text.lower() for text in self._vocabulary_texts_unlocked()]
                starts = list(itertools.accumulate((len(text) + 1 for text in lowered[:-1]), initial=0))
                self._joined = ("\0".join(lowered), starts)
            return self._joined

    def _vocabulary_texts(self) -> list[str]:
        """Each token's text, decoded once, on the first request that needs them (0.4 s for
        SmolLM2's 49,152 tokens on 2 cores)."""
        with self._breakers_lock:
            return self._vocabulary_texts_unlocked()

    def _vocabulary_texts_unlocked(self) -> list[str]:
        if self._token_texts is None:
            # The model's vocabulary may have rows past the tokenizer's last token.
            vocabulary, known = self.loaded.model.config.vocab_size, len(self.tokenizer)
            texts = self.tokenizer.batch_decode([[i] for i in range(min(vocabulary, known))])
            self._token_texts = texts + [""] * (vocabulary - len(texts))
        return self._token_texts

    def _bias(self, bias: tuple[tuple[str, float], ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens that start each word, as it is written inside a sentence (after a
        space) and at its start, capitalized or not, with the word's bias; a token that
        starts two words gets the larger in size."""
        chosen: dict[int, float] = {}
        for written, amount in bias:
            word = written.strip()
            forms = {word, word.lower(), word[:1].upper() + word[1:]}
            for form in forms:
                for text in (form, " " + form):
                    ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                    if ids and abs(amount) > abs(chosen.get(ids[0], 0.0)):
                        chosen[ids[0]] = amount
        device = self.loaded.device
        return (
            torch.tensor(list(chosen), dtype=torch.long, device=device),
            torch.tensor(list(chosen.values()), dtype=torch.float, device=device),
        )

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
                        # An idle engine's team would slow the busy ones (engine/threads.py).
                        release_openmp_threads()
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
        # Schedule: admit waiting requests; each starts by looking for its prompt's cache.
        admitted = [self._requests[request_id] for request_id in self._scheduler.admit()]
        with self._lock:
            for live in admitted:
                live.admitted = True
        for live in admitted:
            if live.ended:  # one that cancel() ended just before it was admitted
                self._finish(live, "cancelled")
            else:
                self._start(live)
        for request_id in list(self._scheduler.running):
            if self._requests[request_id].cancelled:
                self._finish(self._requests[request_id], "cancelled")
        # Run and update, in one forward pass: a token for every request whose prompt is
        # read, and the next pieces of the prompts being read, sized to keep those streams
        # flowing.
        decoding = [self._requests[request_id] for request_id in self._scheduler.decoding]
        plan = self._scheduler.reading_plan(self._reading_budget(streams=bool(decoding)))
        pieces = [(self._requests[request_id], tokens) for request_id, tokens in plan]
        if decoding or pieces:
            self._run(decoding, pieces)

    def _start(self, live: _Live) -> None:
        """Sets a request up to run, holding the cached blocks its prompt starts with."""
        params, ids = live.request.params, live.prompt_ids
        live.started_at = time.monotonic()
        live.generator = make_generator(params.seed, self.loaded.device)
        live.detokenizer = IncrementalDetokenizer(self.tokenizer, ids)
        live.stop = StopText(params.stop)
        live.seen_ids = torch.tensor(ids, dtype=torch.long, device=self.loaded.device)
        live.handle._put(Started(prompt_tokens=len(ids), truncated=live.truncated))
        # The prompt's last token is always read: its logits give the first new token.
        live.digests = digests(ids[: len(ids) - 1])
        live.blocks = self._pool.match(live.digests)
        live.remembered = len(live.blocks)
        live.length = len(live.blocks) * BLOCK_SIZE
        self._pool.record_lookup(prompt_tokens=len(ids), found_tokens=live.length)
        self._scheduler.mark_read(live.request.request_id, live.length)
        if live.length < len(ids) - 1:
            live.handle._put(Reading(done=live.length, total=len(ids)))

    def _run(self, decoding: list[_Live], pieces: list[tuple[_Live, int]]) -> None:
        """Feeds each decoding request its last token and each prompt being read its next
        piece, in one forward pass; samples the next token of the first, and the first of a
        prompt read to its end."""
        lives = [*decoding, *(live for live, _ in pieces)]
        began = time.monotonic()
        try:
            for live in decoding:
                self._hold(live, live.length + 1)
            for live, tokens in pieces:
                self._hold(live, live.length + tokens)
            logits = self._runner.run(
                [live.blocks for live in lives],
                [live.length for live in lives],
                [[live.pending] for live in decoding]
                + [live.prompt_ids[live.length : live.length + tokens] for live, tokens in pieces],
            )
        except Exception as exc:  # a broken model or a bug: what ran fails, the loop goes on
            log.exception("A forward pass failed")
            for live in lives:
                self._finish(live, "error", error=str(exc))
            return
        if logits.device.type == "cuda":
            torch.cuda.synchronize(logits.device)  # the pass runs on; time it to its end
        self._time_pass(time.monotonic() - began, pieces)
        rows = list(range(len(decoding)))
        for live in decoding:
            live.length += 1
            live.seen_ids = torch.cat([live.seen_ids, live.seen_ids.new_tensor([live.pending])])
        for index, (live, tokens) in enumerate(pieces):
            live.length += tokens
            self._scheduler.mark_read(live.request.request_id, tokens)
            self._remember(live)
            if live.length == len(live.prompt_ids):
                rows.append(len(decoding) + index)
            else:
                live.handle._put(Reading(done=live.length, total=len(live.prompt_ids)))
        if rows:
            self._sample_and_take([lives[row] for row in rows], logits[rows])

    def _reading_budget(self, *, streams: bool) -> int:
        """How many prompt tokens to read in the next pass, capped by max_prefill_tokens.

        While other requests stream: what makes the pass take about `reading_ms`, less what
        their own tokens take, but never less than half of it: a full batch's decode step
        can take most of `reading_ms` by itself, and new prompts would then be read 16
        tokens a pass. When none streams: twice `reading_ms`, so that the writer sees the
        reading move on, and a Stop takes effect, about once a second.
        """
        cap = self.config.max_prefill_tokens
        if self._read_cost is None:
            return min(cap, _FIRST_PIECE_TOKENS)
        target = self.config.reading_ms / 1000
        available = max(target - self._step_cost, target / 2) if streams else 2 * target
        furthest = max((entry.read for entry in self._scheduler.running.values() if entry.reading), default=0)
        per_token = self._read_cost * (1 + furthest / _ATTENTION_SPAN)
        return min(cap, max(BLOCK_SIZE, int(available / per_token)))

    def _time_pass(self, seconds: float, pieces: list[tuple[_Live, int]]) -> None:
        """Learns what a decode step costs (a pass with no piece) and what a prompt token
        costs beyond it, at position 0."""
        if not pieces:
            self._step_cost = 0.5 * self._step_cost + 0.5 * seconds
            return
        weighted = sum(tokens * (1 + (live.length + tokens / 2) / _ATTENTION_SPAN) for live, tokens in pieces)
        measured = max(seconds - self._step_cost, 0.1 * seconds) / weighted
        self._read_cost = measured if self._read_cost is None else 0.5 * self._read_cost + 0.5 * measured

    def _hold(self, live: _Live, positions: int) -> None:
        """Gives the request the blocks that `positions` positions need."""
        while len(live.blocks) < blocks_for(positions):
            live.blocks.append(self._pool.allocate())

    def _remember(self, live: _Live) -> None:
        """Makes the request's full blocks findable by the tokens they hold."""
        full = live.length // BLOCK_SIZE
        if live.remembered >= full:
            return
        if len(live.digests) < full:
            ids = [*live.prompt_ids, *live.new_ids][: full * BLOCK_SIZE]
            after = live.digests[-1] if live.digests else b""
            live.digests += digests(ids, after=after, start=len(live.digests))
        for index in range(live.remembered, full):
            self._pool.remember(live.blocks[index], live.digests[index])
        live.remembered = full

    def _sample_and_take(self, lives: list[_Live], logits: torch.Tensor) -> None:
        # Before every sampler: the word bias, and the tokens banned at this place.
        for row, live in enumerate(lives):
            if live.bias is not None:
                ids, amounts = live.bias
                logits[row, ids] += amounts.to(logits.dtype)
            if live.holding is not None:
                logits[row, live.holding] = float("-inf")
            banned_here = live.bans.get(live.new_tokens)
            if banned_here:
                logits[row, list(banned_here)] = float("-inf")
        tokens, choices = sample_with_choices(
            logits,
            [live.request.params for live in lives],
            [live.seen_ids for live in lives],
            [live.generator for live in lives],
            [live.breakers for live in lives],
        )
        for live, token, candidates in zip(lives, tokens, choices, strict=True):
            first = live.request.params.first_token
            # At the first place, also after going back there over a banned phrase, unless
            # the chosen token itself began the phrase.
            if first is not None and live.new_tokens == 0 and first not in live.bans.get(0, ()):
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
        tokens = 1
        if live.banned is not None:
            piece, tokens, back = live.banned.push(live.new_tokens - 1, piece)
            if back is not None:
                self._go_back(live, back)
                return
        text = live.stop.feed(piece)
        if text:
            live.handle._put(Delta(text=text, tokens=tokens))
        if live.stop.stopped:
            self._finish(live, "stop")
        elif live.new_tokens >= live.max_new_tokens:
            self._finish(live, "length")
        else:
            live.pending = token

    def _go_back(self, live: _Live, index: int) -> None:
        """Takes the output back to its first `index` tokens, after a banned phrase
        completed from token `index` on, and bans that token there: the next step samples
        that place again. Nothing from there on was released (BannedText held it)."""
        live.went_back += 1
        live.banned.go_back(index)
        if live.went_back > MAX_GOING_BACK:
            # The text ends before the phrase: what was held from there on is never released.
            del live.new_ids[index:], live.pieces[index:], live.choices[index:]
            live.new_tokens = index
            live.detokenizer = IncrementalDetokenizer(self.tokenizer, [*live.prompt_ids, *live.new_ids])
            self._finish(
                live,
                "error",
                error=f"Could not write around the banned phrases in {MAX_GOING_BACK} tries; the text ends before one.",
            )
            return
        live.bans = {place: ids for place, ids in live.bans.items() if place < index}
        live.bans.setdefault(index, set()).add(live.new_ids[index])
        del live.new_ids[index:], live.pieces[index:], live.choices[index:]
        live.new_tokens = index
        ids = [*live.prompt_ids, *live.new_ids]
        live.detokenizer = IncrementalDetokenizer(self.tokenizer, ids)
        # The step feeds the token before that place again, at its own position, for the
        # logits of the place (a prompt's last token, when it is the first).
        live.pending, live.length = ids[-1], len(ids) - 1
        live.seen_ids = torch.tensor(ids[:-1], dtype=torch.long, device=self.loaded.device)

    def _finish(self, live: _Live, reason: str, error: str | None = None) -> None:
        """Sends the request's Finished, unless cancel() already has, and forgets it."""
        with self._lock:
            already, live.ended = live.ended, True
        finished = None if already else self._finished(live, reason, error)
        self._release(live, keep=reason != "error")
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
            if live.banned is not None:
                held = live.banned.finish() + held
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

    def _release(self, live: _Live, *, keep: bool) -> None:
        """Lets go of the request's blocks; with `keep`, its full blocks stay cached for a
        request that starts with the same tokens (a retry, or one that continues it)."""
        if keep:
            self._remember(live)
        # Taken off the request first: a request is never let go of twice.
        blocks, live.blocks = live.blocks, []
        for block in blocks:
            self._pool.release(block)
