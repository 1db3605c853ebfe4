import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from engine.config import MAX_MAP_WORDS
from generation import params as sampling
from generation import queue, realtime, selectors, tools
from generation.models import Generation, ModelConfig
from storyteller import ratelimit
from storyteller.stories.models import Story
from storyteller.validators import Invalid, check_int, check_list, check_string

log = logging.getLogger(__name__)

# The running output is written to the row at least this often (the worker's relay), so
# that a worker that dies loses at most this much of the story; it is also the heartbeat
# by which a running generation's worker is known to be alive.
FLUSH_EVERY_S = 1.0
# A running generation whose row has not been touched for this long lost its worker; a
# queued one that no worker picked up for this long lost its place in the queue.
STALE_RUNNING_S = 10
STALE_QUEUED_S = 15 * 60
# A generation's ending that a socket following it has not had this long after it ended
# is sent from the row (services.generation_watch).
ENDING_LATE_S = 5
# A worker that has not reported for this long is gone: it reports every few seconds
# (worker/supervisor.REPORT_EVERY_S), also while it loads a model.
WORKER_GONE_S = 10
LOST_MESSAGE = "The worker stopped before this generation finished; the text written so far is kept."


# A client's request_id, echoed back; the Generation row keeps it (its max_length).
MAX_REQUEST_ID_CHARS = Generation._meta.get_field("request_id").max_length


class GenerationRefused(Exception):
    """A generate or cancel request that cannot be served; `code` is the protocol's."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def _refused(invalid: Invalid) -> GenerationRefused:
    return GenerationRefused("invalid", invalid.message, invalid.field)


def request_id_checked(value) -> str | None:
    """A client's `request_id`: absent, or a string of at most 100 characters."""
    try:
        return None if value is None else check_string("request_id", value, max_length=MAX_REQUEST_ID_CHARS)
    except Invalid as exc:
        raise _refused(exc) from None


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


def generation_start(
    *, story: Story, user, text: str, params: dict | None, request_id: str = "", tool=None
) -> Generation:
    """Records a generation for the story and queues it for a worker once committed: a
    continuation of `text`, or with `tool` a selection tool's answer (generation/tools.py)."""
    try:
        check_string("text", text)
        tool = tools.check_tool(tool) if tool is not None else {}
    except Invalid as exc:
        raise _refused(exc) from None
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
    with transaction.atomic():
        # Locking the writer's row makes their simultaneous generate requests take turns,
        # on any of their stories: each then counts the ones before it against their
        # limits. (On SQLite every write transaction takes turns anyway.)
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        # The story's row likewise, so that a second request for it sees the first and is
        # refused as busy. Its settings are read here, fresh: the caller's copy may be as
        # old as the socket.
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
            generation_end(active, reason="error", error=LOST_MESSAGE, error_code="unavailable")
        elif active is not None:
            raise GenerationRefused("busy", "A generation is already running for this story; wait or cancel it.")
        _check_limits(user, resolved["max_new_tokens"])
        generation = Generation.objects.create(
            story=story,
            user=user,
            request_id=request_id,
            prompt_text=text,
            tool=tool,
            params=resolved,
            seed=resolved["seed"],
            model_name=config.name,
        )
        realtime.forget(generation.id)
        queue.enqueue_on_commit("generation.generate", generation.id)
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
        left = max(0, limits["tokens_per_day"] - used["tokens_counted"])
        if max_new_tokens > left:
            held = used["tokens_held"]
            raise GenerationRefused(
                "limit",
                f"You have {left:,} of your {limits['tokens_per_day']:,} tokens for 24 hours left"
                + (f" ({held:,} are held by continuations being written)" if held else "")
                + f", and this asks for {max_new_tokens:,}. "
                + ("Ask for fewer, or wait:" if left else "Wait:")
                + " tokens come back 24 hours after they were used"
                + (", and what a continuation does not write comes back when it ends." if held else "."),
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
        return generation_end(generation, reason="error", error=LOST_MESSAGE, error_code="unavailable")


def generation_watch(generation_id: int, *, waiting: bool) -> tuple[int | None, list[dict]]:
    """What a socket following a generation checks every few seconds: (its place in the
    queue, an ending it missed).

    A generation whose worker is gone (a killed process says nothing) is finished as lost,
    its followers told by its `error` and `done`. With `waiting` (the socket may still tell
    a place in the queue), its place now, read before that check: one just finished here
    is not announced as running. The ending comes from the row once the generation has
    been over for ENDING_LATE_S: by then its followers had it through Redis, unless Redis
    lost it (away when the ending was published); [] otherwise."""
    position = selectors.queue_position_of(generation_id) if waiting else None
    generation_finish_if_lost(generation_id)
    late = timezone.now() - timedelta(seconds=ENDING_LATE_S)
    return position, selectors.generation_ending(generation_id, ended_before=late)


def generation_resume_checked(*, story: Story, generation_id, after_seq) -> Generation:
    """The story's generation that a `resume` asks to follow again past `after_seq`."""
    try:
        check_int("after_seq", after_seq, low=-1)
    except Invalid as exc:
        raise _refused(exc) from None
    generation = selectors.generation_for_story(story, generation_id)
    if generation is None:
        raise GenerationRefused("not_found", f"This story has no generation {generation_id}.")
    return generation


def generation_cancel(*, story: Story, generation_id) -> Generation:
    """Asks the worker to stop a generation of this story; a finished one is left alone."""
    generation = selectors.generation_for_story(story, generation_id)
    if generation is None:
        raise GenerationRefused("not_found", f"This story has no generation {generation_id}.")
    if generation.is_active:
        realtime.request_cancel(generation.id)
    return generation


def generation_end(
    generation: Generation,
    *,
    reason: str,
    error: str = "",
    error_code: str = "internal",
    stream=None,
    worker: str | None = None,
) -> bool:
    """Records the end of an active generation and publishes its `done` (after an `error`
    when it failed). A generation ends once: when another process has already finished it,
    as the socket does for one whose worker went silent, this writes and sends nothing and
    returns False. `stream` is the worker's `realtime.Stream`; without one, events go out
    after commit. With `worker`, only while that worker has it: a worker that stalled
    before starting it, and whose generation went to another, leaves it alone."""
    now = timezone.now()
    generation.status = Generation.Status.FINISHED
    generation.finish_reason = reason
    generation.error_message = error
    generation.error_code = error_code if reason == "error" else ""
    generation.finished_at = now
    generation.updated_at = now
    fields = [
        "status", "finish_reason", "error_code", "error_message", "finished_at", "updated_at", "output", "new_tokens"
    ]  # fmt: skip
    if not generation_update_if(
        generation, statuses=Generation.ACTIVE, fields=[*fields, "ttft_ms", "tokens_per_s", "choices"], worker=worker
    ):
        return False
    events = selectors.ending_events(generation)
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


def generation_update_if(generation: Generation, *, statuses, fields: list[str], worker: str | None = None) -> bool:
    """Saves `fields` only while the row's status is one of `statuses`, and with `worker`
    only while that worker has it (a compare-and-set: another process may have moved it
    on); returns whether it did."""
    values = {name: getattr(generation, name) for name in fields}
    rows = Generation.objects.filter(pk=generation.pk, status__in=statuses)
    if worker is not None:
        rows = rows.filter(worker=worker)
    return bool(rows.update(**values))


def generation_claim(generation_id: int, worker: str) -> Generation | None:
    """The queued generation, now taken by `worker` (host:pid); None when it is not queued
    or another worker has it: a generation runs on one worker, once."""
    now = timezone.now()
    rows = Generation.objects.filter(pk=generation_id, status=Generation.Status.QUEUED, worker="")
    if not rows.update(worker=worker, updated_at=now):
        return None
    return Generation.objects.get(pk=generation_id)


def generations_sweep() -> tuple[int, int]:
    """What every worker does every few seconds for the whole site, whether anyone watches
    or not: ends the active generations whose worker went silent (as lost, keeping their
    text, telling whoever follows them later), and puts back in the queue the ones that a
    worker gone silent took but never started (no writer saw a word of them: a live worker
    runs them instead). Returns (ended, put back)."""
    now = timezone.now()
    stale = Q(status=Generation.Status.RUNNING, updated_at__lt=now - timedelta(seconds=STALE_RUNNING_S)) | Q(
        status=Generation.Status.QUEUED, updated_at__lt=now - timedelta(seconds=STALE_QUEUED_S)
    )
    ended = sum(generation_finish_if_lost(pk) for pk in Generation.objects.filter(stale).values_list("pk", flat=True))
    alive = selectors.workers_alive(WORKER_GONE_S).values("name")
    stranded = Generation.objects.filter(
        status=Generation.Status.QUEUED, updated_at__lt=now - timedelta(seconds=WORKER_GONE_S)
    ).exclude(worker="")
    put_back = 0
    for pk, worker in stranded.exclude(worker__in=alive).values_list("pk", "worker"):
        # Compare-and-set: the worker may have come back and started it meanwhile.
        rows = Generation.objects.filter(pk=pk, status=Generation.Status.QUEUED, worker=worker)
        if rows.update(worker="", updated_at=timezone.now()):
            log.warning("Generation %s was taken by %s, which is gone; it goes back to the queue", pk, worker)
            queue.enqueue_on_commit("generation.generate", pk)
            put_back += 1
    return ended, put_back


# Inspect requests a writer may make per minute (each is a forward pass on a worker).
INSPECTIONS_PER_MINUTE = 60
MAX_INSPECT_CHARS = 20_000
MAX_WORD_CHARS = 100


def inspection_start(*, user, reply_to: str, message: dict, request_id: str | None) -> None:
    """Checks an `inspect` message (docs/protocol.md) and queues it for a worker, which
    answers the socket `reply_to` directly; nothing is recorded."""
    view = message.get("view")
    request = {"view": view}
    text = partial(check_string, min_length=1, blank=False)
    try:
        if view in ("tokens", "attention"):
            request["text"] = text("text", message.get("text"), max_length=MAX_INSPECT_CHARS)
        if view == "attention":
            request["layer"] = check_int("layer", message.get("layer"), low=0)
            position = message.get("position")
            request["position"] = None if position is None else check_int("position", position, low=0)
        elif view == "neighbours":
            request["word"] = text("word", message.get("word"), max_length=MAX_WORD_CHARS)
        elif view == "map":
            word = partial(text, max_length=MAX_WORD_CHARS)
            request["words"] = check_list(
                "words", message.get("words"), min_length=2, max_length=MAX_MAP_WORDS, item=word, unit="words"
            )
        elif view != "tokens":
            raise GenerationRefused("invalid", "view must be one of tokens, attention, neighbours, map.")
    except Invalid as exc:
        raise _refused(exc) from None
    wait = ratelimit.hit("inspect", str(user.pk), limit=INSPECTIONS_PER_MINUTE, window_s=60)
    if wait is not None:
        raise GenerationRefused("limit", f"That is {INSPECTIONS_PER_MINUTE} looks inside in a minute; wait {wait} s.")
    queue.enqueue("generation.inspect", reply_to, request, request_id)


# Context bar previews a writer may ask for per minute (the editor asks at most once a
# second while the story changes, and only when it changed).
CONTEXT_PREVIEWS_PER_MINUTE = 120


def context_preview_start(*, user, story, reply_to: str, message: dict, request_id: str | None) -> None:
    """Checks a `context` message (docs/protocol.md) and queues it for a worker, which
    answers the socket `reply_to` directly with how the model's window would be spent on
    `text` with the story's saved memory, note and lore; nothing is recorded."""
    try:
        text = check_string("text", message.get("text"), max_length=settings.STORYTELLER_MAX_TEXT_CHARS)
        requested = message.get("max_new_tokens")
        if requested is None:
            params = {**selectors.params_defaults_for(story), **story.settings}
            max_new_tokens = params.get("max_new_tokens", ModelConfig().max_new_tokens)
        else:
            max_new_tokens = check_int("max_new_tokens", requested, low=1, high=sampling.MAX_NEW_TOKENS)
    except Invalid as exc:
        raise _refused(exc) from None
    wait = ratelimit.hit("context", str(user.pk), limit=CONTEXT_PREVIEWS_PER_MINUTE, window_s=60)
    if wait is not None:
        raise GenerationRefused(
            "limit", f"That is {CONTEXT_PREVIEWS_PER_MINUTE} context counts in a minute; wait {wait} s."
        )
    queue.enqueue("generation.context", reply_to, story.id, text, max_new_tokens, request_id)
