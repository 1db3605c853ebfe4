import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from generation import context, realtime, selectors
from generation import params as sampling
from generation.models import Generation, ModelConfig
from storyteller import ratelimit
from storyteller.stories.models import Story

log = logging.getLogger(__name__)

# The running output is written to the row at least this often, so that a worker that
# dies loses at most this much of the story.
FLUSH_EVERY_S = 1.0
# How often a running generation looks for a cancel request from the writer.
CANCEL_POLL_S = 0.1
# A running generation whose row has not been touched for this long lost its worker (its
# heartbeat is the flush above, every second); a queued one that no worker picked up for
# this long lost its place in the queue.
STALE_RUNNING_S = 10
STALE_QUEUED_S = 15 * 60
# After its last event, a worker keeps trying this long to reach a Redis that went away.
DRAIN_S = 30
LOST_MESSAGE = "The worker stopped before this generation finished; the text written so far is kept."


class GenerationRefused(Exception):
    """A generate or cancel request that cannot be served; `code` is the protocol's."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def request_id_checked(value) -> str | None:
    """A client's `request_id`: absent, or a string of at most 100 characters."""
    if value is not None and (not isinstance(value, str) or len(value) > 100):
        raise GenerationRefused("invalid", "request_id must be a string of at most 100 characters.", "request_id")
    return value


@transaction.atomic
def model_config_save(config: ModelConfig) -> ModelConfig:
    """Saves a configuration; an active one takes over from the one active before."""
    config.full_clean()
    if config.is_active:
        ModelConfig.objects.exclude(pk=config.pk).filter(is_active=True).update(is_active=False)
    config.save()
    return config


def model_config_active_saved() -> ModelConfig:
    """The active configuration as a row: a fresh site's implicit default is saved (as
    "Default", active), so that a training job can name it as its base."""
    config = selectors.model_config_active()
    if config.pk is None:
        config = ModelConfig.objects.filter(name=config.name).first() or config
        config.is_active = True
        model_config_save(config)
    return config


def model_config_activate(config: ModelConfig) -> ModelConfig:
    config.is_active = True
    return model_config_save(config)


def generation_start(*, story: Story, user, text: str, params: dict | None, request_id: str = "") -> Generation:
    """Records a generation for the story and queues it for a worker once committed."""
    if not isinstance(text, str):
        raise GenerationRefused("invalid", "text must be a string: the story up to the cursor.", "text")
    limit = settings.STORYTELLER_MAX_TEXT_CHARS
    if len(text) > limit:
        raise GenerationRefused("too_large", f"The text is {len(text):,} characters; the limit is {limit:,}.")
    wait = ratelimit.hit("generate", str(user.pk), limit=settings.STORYTELLER_GENERATIONS_PER_MINUTE, window_s=60)
    if wait is not None:
        raise GenerationRefused(
            "limit",
            f"You have asked for {settings.STORYTELLER_GENERATIONS_PER_MINUTE} continuations in a minute; "
            f"wait {wait} s before the next.",
        )
    from generation.tasks import generate_task

    with transaction.atomic():
        # Locking the story row makes two simultaneous generate requests take turns, so
        # the second one sees the first and is refused as busy. Its settings are read
        # here, fresh: the caller's copy may be as old as the socket.
        story = Story.objects.select_for_update().get(pk=story.pk)
        if story.deleted_at is not None:
            # A socket opened before the story went to the trash.
            raise GenerationRefused("not_found", "This story is in the trash; restore it to write on.")
        config = selectors.model_config_active()
        try:
            resolved = sampling.resolve_params(
                defaults=selectors.params_defaults_for(story, config),
                story_settings=story.settings,
                requested=params,
                ranges=config.writer_ranges(),
            )
        except sampling.ParamError as exc:
            raise GenerationRefused("invalid", str(exc)) from None
        active = selectors.generation_active_for_story(story)
        if active is not None and _is_stale(active):
            # Its worker died or its queue was lost (an embedded Redis restarts empty):
            # record that, keeping the text saved so far, instead of locking the story.
            _finish(active, "error", error=LOST_MESSAGE, error_code="unavailable")
        elif active is not None:
            raise GenerationRefused("busy", "A generation is already running for this story; wait or cancel it.")
        _check_limits(user, resolved["max_new_tokens"])
        generation = Generation.objects.create(
            story=story,
            user=user,
            request_id=request_id,
            prompt_text=text,
            params=resolved,
            seed=resolved["seed"],
            model_name=config.name,
        )
        realtime.forget(generation.id)
        transaction.on_commit(lambda: generate_task.delay(generation.id))
    return generation


def _check_limits(user, max_new_tokens: int) -> None:
    """Refuses, with code `limit` and before any model time, a request over the writer's
    limits (selectors.limits_for)."""
    limits = selectors.limits_for(user)
    used = selectors.usage_for(user)
    if limits["max_new_tokens"] is not None and max_new_tokens > limits["max_new_tokens"]:
        raise GenerationRefused(
            "limit",
            f"You may ask for at most {limits['max_new_tokens']:,} new tokens at a time; "
            f"this asks for {max_new_tokens:,}. Lower the length in Settings.",
        )
    if limits["concurrent_generations"] is not None and used["active_generations"] >= limits["concurrent_generations"]:
        raise GenerationRefused(
            "limit",
            f"You have {used['active_generations']} continuations being written, your limit; "
            "wait for one to finish or stop one.",
        )
    if limits["tokens_per_day"] is not None:
        left = max(0, limits["tokens_per_day"] - used["tokens_last_24h"])
        if max_new_tokens > left:
            raise GenerationRefused(
                "limit",
                f"You have {left:,} of your {limits['tokens_per_day']:,} tokens for 24 hours left, and this asks "
                f"for {max_new_tokens:,}. "
                + ("Ask for fewer, or wait:" if left else "Wait:")
                + " tokens come back 24 hours after they were used.",
            )


def _is_stale(generation: Generation) -> bool:
    age = (timezone.now() - generation.updated_at).total_seconds()
    if generation.status == Generation.Status.RUNNING:
        return age > STALE_RUNNING_S
    return age > STALE_QUEUED_S


def generation_finish_if_lost(generation_id: int) -> bool:
    """Records a generation whose worker is gone as finished with an error, keeping the
    text it saved, and tells its followers; returns whether it did. The story socket asks
    this every few seconds of each generation it follows."""

    def lost(generation) -> bool:
        return generation is not None and generation.is_active and _is_stale(generation)

    # A plain read first: most checks find a live worker, and a locking transaction on
    # SQLite takes the database's write lock.
    if not lost(Generation.objects.filter(pk=generation_id).first()):
        return False
    with transaction.atomic():
        generation = Generation.objects.select_for_update().filter(pk=generation_id).first()
        if not lost(generation):
            return False
        return _finish(generation, "error", error=LOST_MESSAGE, error_code="unavailable")


def generation_cancel(*, story: Story, generation_id) -> Generation:
    """Asks the worker to stop a generation of this story; a finished one is left alone."""
    generation = selectors.generation_for_story(story, generation_id)
    if generation is None:
        raise GenerationRefused("not_found", f"This story has no generation {generation_id}.")
    if generation.is_active:
        realtime.request_cancel(generation.id)
    return generation


def _finish(generation: Generation, reason: str, *, error: str = "", error_code: str = "internal", stream=None) -> bool:
    """Records the end of an active generation and publishes its `done` (after an `error`
    when it failed). A generation ends once: when another process has already finished it,
    as the socket does for one whose worker went silent, this writes and sends nothing and
    returns False. `stream` is the worker's `realtime.Stream`; without one, events go out
    after commit."""
    now = timezone.now()
    generation.status = Generation.Status.FINISHED
    generation.finish_reason = reason
    generation.error_message = error
    generation.finished_at = now
    generation.updated_at = now
    fields = ["status", "finish_reason", "error_message", "finished_at", "updated_at", "output", "new_tokens"]
    if not _save_if(generation, Generation.ACTIVE, [*fields, "ttft_ms", "tokens_per_s", "choices"]):
        return False
    events = [selectors.done_event(generation)]
    if reason == "error":
        events.insert(0, {"type": "error", "generation_id": generation.id, "code": error_code, "message": error})
    if stream is not None:
        for event in events:
            stream.publish(event)
        return True

    def publish():
        try:
            for event in events:
                realtime.publish(generation.id, event)
        except Exception:
            # The row holds the outcome; a client that resumes reads it from there.
            log.warning("Could not publish the end of generation %s", generation.id, exc_info=True)

    # After commit: generation_start finishes a stale generation inside its transaction,
    # and a rolled-back finish must not have told anyone. Outside a transaction (the
    # worker) this runs at once.
    transaction.on_commit(publish)
    return True


def _save_if(generation: Generation, statuses, fields: list[str]) -> bool:
    """Saves `fields` only while the row's status is one of `statuses` (a compare-and-set:
    another process may have moved it on); returns whether it did."""
    values = {name: getattr(generation, name) for name in fields}
    return bool(Generation.objects.filter(pk=generation.pk, status__in=statuses).update(**values))


def _story_context(story: Story) -> context.StoryContext:
    lore = tuple(
        context.LoreEntry(keys=tuple(entry.key_list), text=entry.text, name=entry.keys)
        for entry in story.lore.filter(enabled=True)
    )
    return context.StoryContext(memory=story.memory, note=story.note, note_depth=story.note_depth, lore=lore)


def generation_run(generation_id: int) -> None:
    """Runs a queued generation on this worker's engine, streaming and saving its output."""
    from generation.engine.loader import ModelLoadError
    from generation.worker import slot

    generation = Generation.objects.filter(pk=generation_id).first()
    if generation is None or generation.status != Generation.Status.QUEUED:
        # Deleted, or already picked up: a generation never runs twice.
        return
    if realtime.cancel_requested(generation.id):
        _finish(generation, "cancelled")
        return
    try:
        # The model serving now: the active configuration's once this worker has loaded
        # it, the one before until then.
        lease = slot.acquire(selectors.model_wanted)
    except ModelLoadError as exc:
        _finish(generation, "error", error=f"The model could not be loaded: {exc}", error_code="unavailable")
        return
    try:
        _run_on(generation, lease.engine)
    finally:
        slot.release(lease)


def _run_on(generation: Generation, engine) -> None:
    from generation.engine.engine import Request

    params = sampling.to_sampling(generation.params)
    try:
        prompt = context.assemble(
            engine.tokenizer,
            generation.prompt_text,
            _story_context(generation.story),
            engine.prompt_budget(params.max_new_tokens),
        )
    except context.ContextTooLarge as exc:
        _finish(generation, "error", error=str(exc), error_code="too_large")
        return
    generation.status = Generation.Status.RUNNING
    generation.started_at = generation.updated_at = timezone.now()
    generation.model_name = engine.name
    generation.context = prompt.as_dict()
    fields = ["status", "started_at", "model_name", "context", "updated_at"]
    if not _save_if(generation, [Generation.Status.QUEUED], fields):
        return  # finished meanwhile (given up for lost while the model loaded)

    handle = engine.submit(Request(str(generation.id), generation.prompt_text, params, prompt_ids=tuple(prompt.ids)))
    _relay(generation, engine, handle, trimmed=prompt.trimmed_tokens > 0)


def _relay(generation: Generation, engine, handle, *, trimmed: bool) -> None:
    """Publishes a running generation's events to its writer and saves its output: at
    least every FLUSH_EVERY_S while running (the heartbeat), whole at the end. Looks for a
    cancel request every CANCEL_POLL_S. Redis going away interrupts neither: the text goes
    on being saved, and the stream catches up when Redis is back."""
    from generation.engine.events import Delta, Finished, Started

    stream = realtime.Stream(generation.id)
    seq, chunks, lost = 0, [], False
    last_flush = last_cancel_poll = time.monotonic()
    for event in handle.events():
        now = time.monotonic()
        if now - last_cancel_poll >= CANCEL_POLL_S and not stream.broken and not lost:
            last_cancel_poll = now
            if _cancel_requested(generation.id):
                engine.cancel(handle.request_id)
        if now - last_flush >= FLUSH_EVERY_S and not isinstance(event, Finished) and not lost:
            # Also while the engine has not started it: updated_at is the heartbeat by
            # which a lost generation is recognised (generation_finish_if_lost).
            last_flush = now
            alive = Generation.objects.filter(pk=generation.pk, status=Generation.Status.RUNNING).update(
                output="".join(chunks), new_tokens=generation.new_tokens, updated_at=timezone.now()
            )
            if not alive:
                # This worker went silent long enough to be given up for lost, and the
                # writer was told: stop rather than write a second ending.
                log.warning("Generation %s was recorded as lost; stopping it", generation.id)
                lost = True
                engine.cancel(handle.request_id)
            else:
                stream.flush()
        if isinstance(event, Started):
            generation.prompt_tokens = event.prompt_tokens
            generation.prompt_truncated = event.truncated or trimmed
            generation.save(update_fields=["prompt_tokens", "prompt_truncated", "updated_at"])
        elif isinstance(event, Delta) and event.text and not lost:
            stream.publish({"type": "token", "generation_id": generation.id, "seq": seq, "text": event.text})
            seq += 1
            chunks.append(event.text)
            generation.new_tokens += event.tokens
        elif isinstance(event, Finished) and not lost:
            # The joined deltas are what the client received; done.text must equal them.
            generation.output = "".join(chunks)
            generation.new_tokens = event.new_tokens
            generation.ttft_ms = event.ttft_ms
            generation.tokens_per_s = event.tokens_per_s
            generation.choices = _choices(engine.tokenizer, event.token_ids, event.choices, event.pieces)
            _finish(generation, event.reason, error=event.error or "", stream=stream)
    stream.drain(DRAIN_S)


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


def generation_fail(generation_id: int, error: str) -> None:
    """Records an unexpected failure and tells the writer; the output so far is kept."""
    generation = Generation.objects.filter(pk=generation_id).first()
    if generation is None or not generation.is_active:
        return
    _finish(generation, "error", error=error)


def worker_report(name: str, status: dict) -> None:
    """Records a worker's state for the admin (the Worker row) and for /healthz (a
    heartbeat in Redis); either may be away without stopping the other."""
    from generation.models import Worker

    now = timezone.now()
    try:
        Worker.objects.update_or_create(name=name, defaults={**status, "last_heartbeat": now})
        # Rows of workers that stopped long ago (each restart is a new host:pid).
        Worker.objects.filter(last_heartbeat__lt=now - timedelta(days=1)).delete()
    except Exception:
        log.warning("Could not record the worker's state in the database", exc_info=True)
    try:
        realtime.worker_heartbeat(name, status)
    except Exception:
        log.warning("Heartbeat to Redis failed; retrying", exc_info=True)


# Inspect requests a writer may make per minute (each is a forward pass on a worker).
INSPECTIONS_PER_MINUTE = 60
MAX_INSPECT_CHARS = 20_000
MAX_WORD_CHARS = 100


def inspection_start(*, user, reply_to: str, message: dict, request_id: str | None) -> None:
    """Checks an `inspect` message (docs/protocol.md) and queues it for a worker, which
    answers the socket `reply_to` directly; nothing is recorded."""
    from generation.engine.inspect import MAX_MAP_WORDS
    from generation.tasks import inspect_task

    view = message.get("view")
    request = {"view": view}
    if view in ("tokens", "attention"):
        request["text"] = _text_field(message, "text", MAX_INSPECT_CHARS)
    if view == "attention":
        request["layer"] = _count_field(message, "layer", required=True)
        request["position"] = _count_field(message, "position", required=False)
    elif view == "neighbours":
        request["word"] = _text_field(message, "word", MAX_WORD_CHARS)
    elif view == "map":
        words = message.get("words")
        if not isinstance(words, list) or not 2 <= len(words) <= MAX_MAP_WORDS:
            raise GenerationRefused("invalid", f"words must be a list of 2 to {MAX_MAP_WORDS} words.")
        request["words"] = [_text_field({"word": w}, "word", MAX_WORD_CHARS) for w in words]
    elif view != "tokens":
        raise GenerationRefused("invalid", "view must be one of tokens, attention, neighbours, map.")
    wait = ratelimit.hit("inspect", str(user.pk), limit=INSPECTIONS_PER_MINUTE, window_s=60)
    if wait is not None:
        raise GenerationRefused("limit", f"That is {INSPECTIONS_PER_MINUTE} looks inside in a minute; wait {wait} s.")
    inspect_task.delay(reply_to, request, request_id)


def _text_field(message: dict, name: str, limit: int) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise GenerationRefused("invalid", f"{name} must be a string of 1 to {limit:,} characters.")
    return value


def _count_field(message: dict, name: str, *, required: bool) -> int | None:
    value = message.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GenerationRefused("invalid", f"{name} must be an integer, 0 or more.")
    return value


def inspection_run(reply_to: str, request: dict, request_id: str | None) -> None:
    """Answers an inspect request with the model serving now, on this worker."""
    from generation.engine.inspect import InspectError
    from generation.engine.loader import ModelLoadError
    from generation.worker import inspector_for, slot

    ids = {"request_id": request_id} if request_id is not None else {}
    try:
        lease = slot.acquire(selectors.model_wanted)
    except ModelLoadError as exc:
        realtime.reply(reply_to, _error(ids, "unavailable", f"The model could not be loaded: {exc}"))
        return
    try:
        inspector = inspector_for(lease.engine)
        view = request["view"]
        if view == "tokens":
            tokens = inspector.tokens(request["text"])
            result = {"tokens": tokens, "count": len(tokens)}
        elif view == "attention":
            result = inspector.attention(request["text"], layer=request["layer"], position=request["position"])
        elif view == "neighbours":
            result = inspector.neighbours(request["word"])
        else:
            result = {"points": inspector.map(request["words"])}
        answer = {"type": "inspection", **ids, "view": view, "model": lease.engine.name, **result}
    except InspectError as exc:
        answer = _error(ids, "invalid", str(exc))
    finally:
        slot.release(lease)
    realtime.reply(reply_to, answer)


def _error(ids: dict, code: str, message: str) -> dict:
    return {"type": "error", **ids, "code": code, "message": message}


def inspection_failed(reply_to: str, request_id: str | None, message: str) -> None:
    ids = {"request_id": request_id} if request_id is not None else {}
    realtime.reply(reply_to, _error(ids, "internal", message))
