import logging
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from generation import context, realtime, selectors
from generation import params as sampling
from generation.models import Generation, ModelConfig
from storyteller.stories.models import Story

log = logging.getLogger(__name__)

# The running output is written to the row at least this often, so that a worker that
# dies loses at most this much of the story.
FLUSH_EVERY_S = 1.0
# How often a running generation looks for a cancel request from the writer.
CANCEL_POLL_S = 0.1
# A running generation whose row has not been touched for this long lost its worker; a
# queued one that no worker picked up for this long lost its place in the queue.
STALE_RUNNING_S = 60
STALE_QUEUED_S = 15 * 60


class GenerationRefused(Exception):
    """A generate or cancel request that cannot be served; `code` is the protocol's."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@transaction.atomic
def model_config_save(config: ModelConfig) -> ModelConfig:
    """Saves a configuration; an active one takes over from the one active before."""
    config.full_clean()
    if config.is_active:
        ModelConfig.objects.exclude(pk=config.pk).filter(is_active=True).update(is_active=False)
    config.save()
    return config


def model_config_activate(config: ModelConfig) -> ModelConfig:
    config.is_active = True
    return model_config_save(config)


def generation_start(*, story: Story, user, text: str, params: dict | None, request_id: str = "") -> Generation:
    """Records a generation for the story and queues it for a worker once committed."""
    limit = settings.STORYTELLER_MAX_TEXT_CHARS
    if len(text) > limit:
        raise GenerationRefused("too_large", f"The text is {len(text):,} characters; the limit is {limit:,}.")
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
            )
        except sampling.ParamError as exc:
            raise GenerationRefused("invalid", str(exc)) from None
        active = selectors.generation_active_for_story(story)
        if active is not None and _is_stale(active):
            # Its worker died or its queue was lost (an embedded Redis restarts empty):
            # record that, keeping the text saved so far, instead of locking the story.
            _finish(
                active,
                "error",
                error="The worker stopped before this generation finished; the text written so far is kept.",
                error_code="unavailable",
            )
        elif active is not None:
            raise GenerationRefused("busy", "A generation is already running for this story; wait or cancel it.")
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


def _is_stale(generation: Generation) -> bool:
    age = (timezone.now() - generation.updated_at).total_seconds()
    if generation.status == Generation.Status.RUNNING:
        return age > STALE_RUNNING_S
    return age > STALE_QUEUED_S


def generation_cancel(*, story: Story, generation_id) -> Generation:
    """Asks the worker to stop a generation of this story; a finished one is left alone."""
    generation = selectors.generation_for_story(story, generation_id)
    if generation is None:
        raise GenerationRefused("not_found", f"This story has no generation {generation_id}.")
    if generation.is_active:
        realtime.request_cancel(generation.id)
    return generation


def _finish(generation: Generation, reason: str, *, error: str = "", error_code: str = "internal") -> None:
    generation.status = Generation.Status.FINISHED
    generation.finish_reason = reason
    generation.error_message = error
    generation.finished_at = timezone.now()
    generation.save()
    events = [selectors.done_event(generation)]
    if reason == "error":
        events.insert(0, {"type": "error", "generation_id": generation.id, "code": error_code, "message": error})

    def publish():
        for event in events:
            realtime.publish(generation.id, event)

    # After commit: generation_start finishes a stale generation inside its transaction,
    # and a rolled-back finish must not have told anyone. Outside a transaction (the
    # worker) this runs at once.
    transaction.on_commit(publish)


def _story_context(story: Story) -> context.StoryContext:
    lore = tuple(
        context.LoreEntry(keys=tuple(entry.key_list), text=entry.text, name=entry.keys)
        for entry in story.lore.filter(enabled=True)
    )
    return context.StoryContext(memory=story.memory, note=story.note, note_depth=story.note_depth, lore=lore)


def generation_run(generation_id: int) -> None:
    """Runs a queued generation on this worker's engine, streaming and saving its output."""
    from generation.engine.engine import Request
    from generation.engine.loader import ModelLoadError
    from generation.worker import engine_for

    generation = Generation.objects.filter(pk=generation_id).first()
    if generation is None or generation.status != Generation.Status.QUEUED:
        # Deleted, or already picked up: a generation never runs twice.
        return
    if realtime.cancel_requested(generation.id):
        _finish(generation, "cancelled")
        return
    config = selectors.model_config_active()
    try:
        engine = engine_for(selectors.model_spec(config))
    except ModelLoadError as exc:
        _finish(generation, "error", error=f"The model could not be loaded: {exc}", error_code="unavailable")
        return

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
    generation.started_at = timezone.now()
    generation.model_name = engine.name
    generation.context = prompt.as_dict()
    generation.save(update_fields=["status", "started_at", "model_name", "context", "updated_at"])

    handle = engine.submit(Request(str(generation.id), generation.prompt_text, params, prompt_ids=tuple(prompt.ids)))
    _relay(generation, engine, handle, trimmed=prompt.trimmed_tokens > 0)


def _relay(generation: Generation, engine, handle, *, trimmed: bool) -> None:
    """Publishes a running generation's events to its writer and saves its output: at
    least every FLUSH_EVERY_S while running (the heartbeat), whole at the end. Looks for a
    cancel request every CANCEL_POLL_S."""
    from generation.engine.events import Delta, Finished, Started

    seq, chunks = 0, []
    last_flush = last_cancel_poll = time.monotonic()
    for event in handle.events():
        now = time.monotonic()
        if now - last_cancel_poll >= CANCEL_POLL_S:
            last_cancel_poll = now
            if realtime.cancel_requested(generation.id):
                engine.cancel(handle.request_id)
        if now - last_flush >= FLUSH_EVERY_S and not isinstance(event, Finished):
            # Also while the engine has not started it: updated_at is the heartbeat by
            # which a stale generation is recognised (generation_start).
            last_flush = now
            Generation.objects.filter(pk=generation.pk).update(
                output="".join(chunks), new_tokens=generation.new_tokens, updated_at=timezone.now()
            )
        if isinstance(event, Started):
            generation.prompt_tokens = event.prompt_tokens
            generation.prompt_truncated = event.truncated or trimmed
            generation.save(update_fields=["prompt_tokens", "prompt_truncated", "updated_at"])
        elif isinstance(event, Delta) and event.text:
            realtime.publish(
                generation.id, {"type": "token", "generation_id": generation.id, "seq": seq, "text": event.text}
            )
            seq += 1
            chunks.append(event.text)
            generation.new_tokens += event.tokens
        elif isinstance(event, Finished):
            # The joined deltas are what the client received; done.text must equal them.
            generation.output = "".join(chunks)
            generation.new_tokens = event.new_tokens
            generation.ttft_ms = event.ttft_ms
            generation.tokens_per_s = event.tokens_per_s
            _finish(generation, event.reason, error=event.error or "")


def generation_fail(generation_id: int, error: str) -> None:
    """Records an unexpected failure and tells the writer; the output so far is kept."""
    generation = Generation.objects.filter(pk=generation_id).first()
    if generation is None or not generation.is_active:
        return
    _finish(generation, "error", error=error)
