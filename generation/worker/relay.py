"""A generation on this worker: from its queued row to the engine, and from the engine's
events to the writer (the channel layer) and to the row."""

import logging
import time

from django.utils import timezone

from engine.engine import Engine, Request
from engine.errors import ModelLoadError
from engine.events import Delta, Finished, Reading, Started
from generation import context, realtime, services
from generation import params as sampling
from generation.models import Generation
from generation.worker.serving import model_wanted, slot
from generation.worker.supervisor import worker_name

log = logging.getLogger(__name__)

# How often a running generation looks for a cancel request from the writer.
CANCEL_POLL_S = 0.1
# After its last event, a worker keeps trying this long to reach a Redis that went away.
DRAIN_S = 30
# While a long prompt is read, the writer is told how far at most this often; a prompt read
# in less time than this (a short one, or one found in the cache) is not reported at all.
READING_EVERY_S = 0.25


def generation_run(generation_id: int) -> None:
    """Runs a queued generation on this worker's engine, streaming and saving its output."""
    generation = services.generation_claim(generation_id, worker_name())
    if generation is None:
        # Deleted, ended, or taken by another worker: a generation never runs twice.
        return
    mine = generation.worker  # what it ends before it runs, it ends only while it has it
    if realtime.cancel_requested(generation.id):
        services.generation_end(generation, reason="cancelled", worker=mine)
        return
    try:
        # The model serving now: the active configuration's once this worker has loaded
        # it, the one before until then.
        lease = slot.acquire(model_wanted)
    except ModelLoadError as exc:
        services.generation_end(
            generation,
            reason="error",
            error=f"The model could not be loaded: {exc}",
            error_code="unavailable",
            worker=mine,
        )
        return
    try:
        Relay(generation, lease.engine).run()
    finally:
        slot.release(lease)


def generation_fail(generation_id: int, error: str) -> None:
    """Records an unexpected failure and tells the writer; the output so far is kept."""
    generation = Generation.objects.filter(pk=generation_id).first()
    if generation is not None and generation.is_active:
        services.generation_end(generation, reason="error", error=error)


class Relay:
    """One generation on one engine: assembles its prompt, submits it, then publishes its
    events to its writer and saves its output: at least every FLUSH_EVERY_S while running
    (the heartbeat), whole at the end. Looks for a cancel request every CANCEL_POLL_S.
    Redis going away interrupts neither: the text goes on being saved, and the stream
    catches up when Redis is back."""

    def __init__(self, generation: Generation, engine: Engine):
        self.generation = generation
        self.engine = engine
        self.stream = realtime.Stream(generation.id)
        self.seq = 0
        self.chunks: list[str] = []
        # Given up for lost by another process while this worker was silent: the writer
        # was told, so this one stops rather than write a second ending.
        self.lost = False
        # The engine's latest Reading not yet reported, and when it may go (the first is
        # held back READING_EVERY_S, the next ones follow at least that far apart).
        self.reading: Reading | None = None
        self.report_at: float | None = None
        # The first token or the end came: what is left of the prompt to read is nothing.
        self.prompt_read = False

    def run(self) -> None:
        generation, engine = self.generation, self.engine
        params = sampling.to_sampling(generation.params)
        budget = engine.prompt_budget(params.max_new_tokens)
        try:
            if generation.tool:
                prompt = context.assemble_tool(
                    engine.tokenizer, generation.prompt_text, generation.tool, story_context(generation.story), budget
                )
            else:
                prompt = context.assemble(
                    engine.tokenizer, generation.prompt_text, story_context(generation.story), budget
                )
        except context.ContextTooLarge as exc:
            services.generation_end(
                generation, reason="error", error=str(exc), error_code="too_large", worker=generation.worker
            )
            return
        generation.status = Generation.Status.RUNNING
        generation.started_at = generation.updated_at = timezone.now()
        generation.model_name = engine.name
        generation.context = prompt.as_dict()
        fields = ["status", "started_at", "model_name", "context", "updated_at"]
        if not services.generation_update_if(
            generation, statuses=[Generation.Status.QUEUED], fields=fields, worker=generation.worker
        ):
            return  # finished meanwhile, or given back to the queue while this worker was silent
        request = Request(str(generation.id), generation.prompt_text, params, prompt_ids=tuple(prompt.ids))
        handle = engine.submit(request)
        trimmed = prompt.trimmed_tokens > 0
        last_flush = last_cancel_poll = time.monotonic()
        for event in handle.events():
            now = time.monotonic()
            if now - last_cancel_poll >= CANCEL_POLL_S and not self.stream.broken and not self.lost:
                last_cancel_poll = now
                if _cancel_requested(generation.id):
                    engine.cancel(handle.request_id)
            if now - last_flush >= services.FLUSH_EVERY_S and not isinstance(event, Finished) and not self.lost:
                # Also while the engine has not started it: updated_at is the heartbeat by
                # which a lost generation is recognised (generation_finish_if_lost).
                last_flush = now
                if not self._flush():
                    log.warning("Generation %s was recorded as lost; stopping it", generation.id)
                    self.lost = True
                    engine.cancel(handle.request_id)
            if isinstance(event, Started):
                self._admitted(event, truncated=event.truncated or trimmed)
            elif isinstance(event, Reading) and not self.prompt_read:
                if self.report_at is None:
                    self.report_at = now + READING_EVERY_S
                self.reading = event
            elif isinstance(event, Delta) and event.text and not self.lost:
                self._publish(event)
            elif isinstance(event, Finished) and not self.lost:
                self._finish(event)
            if isinstance(event, (Delta, Finished)):
                self.prompt_read, self.reading = True, None
            # The latest Reading goes out once it is due, also on the engine's idle ticks
            # (None, every quarter second), so a report held back is late by a tick at
            # most, and the last one before a long pause is not lost.
            if self.reading is not None and now >= self.report_at and not self.lost:
                self._report(self.reading)
                self.reading, self.report_at = None, now + READING_EVERY_S
        self.stream.drain(DRAIN_S)

    def _admitted(self, started: Started, *, truncated: bool) -> None:
        """The engine took it in: it runs from now on, and the writer is told so (a `queued`
        with position 0, in the stream before any `reading` or word)."""
        generation = self.generation
        generation.prompt_tokens = started.prompt_tokens
        generation.prompt_truncated = truncated
        generation.admitted_at = timezone.now()
        generation.save(update_fields=["prompt_tokens", "prompt_truncated", "admitted_at", "updated_at"])
        if not self.lost:
            self.stream.publish(realtime.queued_event(generation.id, 0, generation.request_id))

    def _flush(self) -> bool:
        """Saves the output so far while the row still runs; False when it no longer does."""
        generation = self.generation
        alive = Generation.objects.filter(pk=generation.pk, status=Generation.Status.RUNNING).update(
            output="".join(self.chunks), new_tokens=generation.new_tokens, updated_at=timezone.now()
        )
        if alive:
            self.stream.flush()
        return bool(alive)

    def _publish(self, delta: Delta) -> None:
        generation = self.generation
        self.stream.publish({"type": "token", "generation_id": generation.id, "seq": self.seq, "text": delta.text})
        self.seq += 1
        self.chunks.append(delta.text)
        generation.new_tokens += delta.tokens

    def _report(self, reading: Reading) -> None:
        self.stream.report(
            {"type": "reading", "generation_id": self.generation.id, "done": reading.done, "total": reading.total}
        )

    def _finish(self, finished: Finished) -> None:
        generation = self.generation
        # The joined deltas are what the client received; done.text must equal them.
        generation.output = "".join(self.chunks)
        generation.new_tokens = finished.new_tokens
        generation.ttft_ms = finished.ttft_ms
        generation.tokens_per_s = finished.tokens_per_s
        generation.choices = _choices(self.engine.tokenizer, finished.token_ids, finished.choices, finished.pieces)
        services.generation_end(generation, reason=finished.reason, error=finished.error or "", stream=self.stream)


def story_context(story) -> context.StoryContext:
    lore = tuple(
        context.LoreEntry(
            keys=tuple(entry.key_list),
            text=entry.text,
            name=entry.keys,
            id=entry.id,
            secondary_keys=tuple(entry.secondary_key_list),
            logic=entry.logic,
            priority=entry.priority,
            scan_chars=entry.scan_chars,
        )
        for entry in story.lore.filter(enabled=True)
    )
    return context.StoryContext(memory=story.memory, note=story.note, note_depth=story.note_depth, lore=lore)


def _choices(tokenizer, token_ids, choices, pieces) -> list[dict]:
    """The recorded candidates of each new token for the Generation row: "text" is what the
    token added to the output (the pieces join to it, so a client can place each token in
    the story); a candidate's text is its own decoding, for showing."""
    if not choices:
        return []

    def alone(token_id: int) -> str:
        return tokenizer.decode([token_id])

    return [
        {"id": token, "text": piece, "top": [[i, alone(i), round(p, 5)] for i, p in candidates]}
        for token, candidates, piece in zip(token_ids, choices, pieces, strict=True)
    ]


def _cancel_requested(generation_id: int) -> bool:
    try:
        return realtime.cancel_requested(generation_id)
    except Exception:
        return False  # Redis is away; the writer's cancel is seen once it is back
