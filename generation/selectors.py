import math
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone

from engine.config import ModelSpec
from generation import params, realtime
from generation.models import Generation, ModelConfig, Preset, UsageLimit, Worker
from storyteller.stories.text import utf16_length
from storyteller.validators import is_int


def model_config_active() -> ModelConfig:
    """The active configuration; without one, an unsaved default running the packaged model
    (or STORYTELLER_DEFAULT_MODEL), so that a fresh site works before anyone opens the admin."""
    config = ModelConfig.objects.filter(is_active=True).first()
    return config or ModelConfig(name="Default", source=settings.STORYTELLER_DEFAULT_MODEL, is_active=True)


def site_params_defaults(config: ModelConfig) -> dict:
    """The sampling parameters of a story with neither settings nor preset: the samplers
    that are off unless asked for, and the configuration's defaults."""
    return {**params.SAMPLER_DEFAULTS, **config.default_params()}


def params_defaults_for(story, config: ModelConfig | None = None) -> dict:
    """The sampling parameters a story starts from, before its own settings: the site's
    (site_params_defaults), then its preset's."""
    config = config or model_config_active()
    return {**site_params_defaults(config), **(story.preset.params if story.preset else {})}


def setting_limits(config: ModelConfig) -> dict:
    """What a story's settings may be on this configuration, for the editor to mark a wrong
    value where it is typed (the server checks again): {name: (lowest, highest)}, and the
    stop list's limits."""
    ranges = config.writer_ranges()
    return {
        "max_new_tokens": ranges["max_new_tokens"],
        "temperature": ranges["temperature"],
        "top_k": (0, params.MAX_TOP_K),
        "repetition_penalty": (params.MIN_PENALTY, params.MAX_PENALTY),
        "stops": params.MAX_STOPS,
        "stop_chars": params.MAX_STOP_CHARS,
        "dry_multiplier": (0, params.MAX_DRY_MULTIPLIER),
        "dry_base": (1, params.MAX_DRY_BASE),
        "dry_allowed_length": (1, params.MAX_DRY_ALLOWED_LENGTH),
        "dry_breakers": params.MAX_DRY_BREAKERS,
        "dry_breaker_chars": params.MAX_DRY_BREAKER_CHARS,
        "xtc_threshold": (0, params.MAX_XTC_THRESHOLD),
        "banned": params.MAX_BANNED,
        "banned_chars": params.MAX_BANNED_CHARS,
        "bias_words": params.MAX_BIAS_WORDS,
        "bias_most": params.MAX_BIAS,
    }


def preset_list() -> list[dict]:
    return [
        {"id": p.id, "name": p.name, "description": p.description, "params": p.params} for p in Preset.objects.all()
    ]


def model_spec(config: ModelConfig) -> ModelSpec:
    return ModelSpec(
        source=config.source,
        dtype=config.dtype,
        device=config.device,
        models_dir=str(settings.STORYTELLER_MODELS_DIR),
        adapter=config.adapter.strip(),
    )


def generation_for_story(story, generation_id) -> Generation | None:
    if not is_int(generation_id):
        return None
    return Generation.objects.filter(pk=generation_id, story=story).first()


def generations_for_story(story, *, limit: int, with_choices: bool = False) -> list[Generation]:
    """The story's generations, newest first; `with_choices`: only finished ones that
    recorded the model's choices."""
    found = Generation.objects.filter(story=story)
    if with_choices:
        found = found.filter(status=Generation.Status.FINISHED).exclude(choices=[])
    return list(found.order_by("-created_at", "-pk")[:limit])


def generation_last_for_story(story) -> Generation | None:
    return Generation.objects.filter(story=story).order_by("-created_at", "-pk").first()


def generation_unseen_for_story(story) -> dict | None:
    """The story's last continuation when the writer has not seen all of it: still running,
    or finished after the story was last saved (its tab was closed while it wrote). A
    selection tool's answer is not one: it belongs in no place of the story by itself.

    `insert_at` is where its words belong: after the text it continued, past the part of
    its output that autosave already put in the story (`skip` characters of it). Both
    count UTF-16 code units, as the editor's JavaScript strings do."""
    generation = generation_last_for_story(story)
    if generation is None or generation.tool:
        return None
    finished_unseen = (
        generation.status == Generation.Status.FINISHED
        and generation.finished_at is not None
        and generation.finished_at >= story.updated_at
    )
    if not (generation.is_active or finished_unseen):
        return None
    prompt, text = generation.prompt_text, story.text
    at = len(prompt) if text.startswith(prompt) else len(text)
    rest, output = text[at:], generation.output
    skip = 0
    while skip < min(len(rest), len(output)) and rest[skip] == output[skip]:
        skip += 1
    if not generation.is_active and skip == len(output):
        return None
    return {
        "id": generation.id,
        "status": generation.status,
        "finish_reason": generation.finish_reason,
        "text": output[skip:],
        "insert_at": utf16_length(text[: at + skip]),
        "skip": utf16_length(output[:skip]),
    }


def generation_active_for_story(story) -> Generation | None:
    return Generation.objects.filter(story=story, status__in=Generation.ACTIVE).first()


def queue_position(generation: Generation) -> int:
    """Its place in the line: 0 once its engine runs it (or it has ended); while it waits,
    1 + the waiting generations ahead of it. It waits until an engine admits it: in the
    queue for a worker, or on a worker whose engine has all its rows in use (docs/protocol.md).

    Running generations are not counted: a worker's engine decodes all of its running
    generations together, and the first one waiting starts when any of them ends.
    """
    if not generation.is_active or generation.admitted_at is not None:
        return 0
    ahead = Generation.objects.filter(status__in=Generation.ACTIVE, admitted_at__isnull=True, pk__lt=generation.pk)
    return 1 + ahead.count()


def queue_position_of(generation_id: int) -> int:
    generation = Generation.objects.filter(pk=generation_id).first()
    return queue_position(generation) if generation is not None else 0


def generation_as_dict(generation: Generation) -> dict:
    """A generation as the HTTP API shows it: "queued" until an engine runs it, also while
    it waits on a worker (queue_position)."""
    waiting = generation.is_active and generation.admitted_at is None
    return {
        "generation_id": generation.id,
        "request_id": generation.request_id or None,
        "status": Generation.Status.QUEUED.value if waiting else generation.status,
        "finish_reason": generation.finish_reason or None,
        "text": generation.output,
        "error": generation.error_message or None,
        "model": generation.model_name,
        "params": generation.params,
        "stats": generation.stats(),
        "choices": generation.choices,
        "created_at": generation.created_at.isoformat(),
        "finished_at": generation.finished_at.isoformat() if generation.finished_at else None,
    }


def done_event(generation: Generation) -> dict:
    """The protocol's `done` message for a finished generation."""
    return {
        "type": "done",
        "generation_id": generation.id,
        "finish_reason": generation.finish_reason,
        "text": generation.output,
        "stats": generation.stats(),
        # What the model read, part by part (the texts are at /api/stories/<id>/context).
        "context": {
            "parts": [
                {k: part[k] for k in ("kind", "label", "tokens")} for part in generation.context.get("parts", [])
            ],
            "trimmed_tokens": generation.context.get("trimmed_tokens", 0),
            "warnings": generation.context.get("warnings", []),
        },
    }


def limits_for(user) -> dict:
    """The writer's limits (None: no limit): their own row's fields, then the site
    default's, then UsageLimit.DEFAULTS."""
    rows = {row.user_id: row for row in UsageLimit.objects.filter(Q(user=user) | Q(user__isnull=True))}
    limits = {}
    for name, default in UsageLimit.DEFAULTS.items():
        own = getattr(rows[user.pk], name) if user.pk in rows else None
        site = getattr(rows[None], name) if None in rows else default
        limits[name] = own if own is not None else site
    return limits


USAGE_WINDOW = timedelta(hours=24)


def usage_for(user) -> dict:
    """What the writer has used: generations running or waiting now, the new tokens of
    the last 24 hours with what those may still spend, and generations over 24 hours.

    `tokens_counted` counts a finished generation's new tokens and, for one still queued
    or running, all it may write (its max_new_tokens; tokens_held is that share), so that
    requests made together cannot spend the daily limit several times over.
    """
    since = timezone.now() - USAGE_WINDOW
    recent = Generation.objects.filter(user=user, created_at__gte=since)
    totals = recent.exclude(status__in=Generation.ACTIVE).aggregate(tokens=Sum("new_tokens"))
    active = list(Generation.objects.filter(user=user, status__in=Generation.ACTIVE).only("params", "new_tokens"))
    held = sum(max(g.new_tokens, g.params.get("max_new_tokens", 0)) for g in active)
    return {
        "active_generations": len(active),
        "tokens_counted": (totals["tokens"] or 0) + held,
        "tokens_held": held,
        "generations_last_24h": recent.count(),
    }


# The dashboard's windows: (length, bucket) of each.
LOAD_WINDOWS = {"hour": (timedelta(hours=1), timedelta(minutes=1)), "day": (timedelta(days=1), timedelta(minutes=15))}


def load_series(window: str, now=None) -> dict:
    """The load over the last hour or day, bucket by bucket, for the staff dashboard.

    Per bucket: generations finished per minute, those of them that ended in an error, and
    new tokens per second (counted when they finish), the time to first token as the writer waits for it (queue plus the
    engine's first token) at p50 and p95, and, at the bucket's end, how many generations
    waited for an engine to take them and how many were running.
    """
    length, bucket = LOAD_WINDOWS[window]
    now = now or timezone.now()
    start = now - length
    rows = list(
        Generation.objects.filter(Q(finished_at__isnull=True) | Q(finished_at__gte=start), created_at__lt=now).values(
            "created_at", "started_at", "admitted_at", "finished_at", "finish_reason", "new_tokens", "ttft_ms"
        )
    )
    count = int(length / bucket)
    ends = [start + bucket * (n + 1) for n in range(count)]
    finished = [[] for _ in range(count)]
    for row in rows:
        if row["finished_at"] is not None and row["finished_at"] >= start:
            finished[min(count - 1, int((row["finished_at"] - start) / bucket))].append(row)

    later = now + bucket  # the end of what has not ended yet

    # Waiting until an engine admits it (also on a worker whose engine is full), then running.
    def waiting_at(t, row):
        return row["created_at"] <= t < (row["admitted_at"] or row["finished_at"] or later)

    def running_at(t, row):
        return row["admitted_at"] is not None and row["admitted_at"] <= t < (row["finished_at"] or later)

    minutes, seconds = bucket.total_seconds() / 60, bucket.total_seconds()
    series = {"ends": [], "generations_per_min": [], "errors_per_min": [], "tokens_per_s": []}
    series |= {"ttft_p50_ms": [], "ttft_p95_ms": []}
    series |= {"queued": [], "running": []}
    for end, done in zip(ends, finished, strict=True):
        waits = sorted(
            (r["started_at"] - r["created_at"]).total_seconds() * 1000 + r["ttft_ms"]
            for r in done
            if r["ttft_ms"] is not None and r["started_at"] is not None
        )
        series["ends"].append(end.isoformat())
        series["generations_per_min"].append(round(len(done) / minutes, 2))
        errors = sum(r["finish_reason"] == "error" for r in done)
        series["errors_per_min"].append(round(errors / minutes, 2))
        series["tokens_per_s"].append(round(sum(r["new_tokens"] for r in done) / seconds, 2))
        series["ttft_p50_ms"].append(_percentile(waits, 0.50))
        series["ttft_p95_ms"].append(_percentile(waits, 0.95))
        series["queued"].append(sum(waiting_at(end, r) for r in rows))
        series["running"].append(sum(running_at(end, r) for r in rows))
    return {"window": window, "bucket_s": int(seconds), "series": series}


def _percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank percentile of an ordered list; None when it is empty."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def workers_alive(within_s: float = realtime.WORKER_ALIVE_S):
    """The workers that reported within `within_s` (by default realtime.WORKER_ALIVE_S:
    what they report still holds)."""
    return Worker.objects.filter(last_heartbeat__gte=timezone.now() - timedelta(seconds=within_s))


def workers_health(workers: list[dict]) -> tuple[str, list[dict]]:
    """/healthz's view of the live workers' reports (their heartbeats, or their rows): "ok:
    N" with N those that can generate (a model loaded; one loading another meanwhile still
    serves with the one it has) or "down: why", and each one's state, model and load."""
    ready = sum(worker.get("state") == "ready" for worker in workers)
    if ready:
        summary = f"ok: {ready}"
    elif not workers:
        summary = f"down: no worker heartbeat in the last {realtime.WORKER_ALIVE_S} s"
    elif all(worker.get("state") == "error" for worker in workers):
        summary = "down: no worker could load the model"
    else:
        summary = "down: no worker has loaded the model yet"
    states = [
        {"state": w.get("state", ""), "model": w.get("model_name", ""), "live_requests": w.get("live_requests", 0)}
        for w in workers
    ]
    return summary, sorted(states, key=lambda w: (w["state"], w["model"]))


def writers_with_usage(users):
    """Writers with what each used in the last 24 hours and runs now, most tokens first:
    tokens_24h, generations_24h, running_now."""
    recent = Q(generations__created_at__gte=timezone.now() - timedelta(hours=24))
    return users.annotate(
        tokens_24h=Sum("generations__new_tokens", filter=recent, default=0),
        generations_24h=Count("generations", filter=recent),
        running_now=Count("generations", filter=Q(generations__status__in=Generation.ACTIVE)),
    ).order_by("-tokens_24h", "username")


def ending_events(generation: Generation) -> list[dict]:
    """A finished generation's last messages: its `done`, after an `error` when it failed."""
    events = [done_event(generation)]
    if generation.finish_reason == "error":
        code = generation.error_code or "internal"  # rows ended before the code was kept
        events.insert(
            0, {"type": "error", "generation_id": generation.id, "code": code, "message": generation.error_message}
        )
    return events


def generation_ending(generation_id: int, *, ended_before=None) -> list[dict]:
    """What a socket that follows a generation is sent when its event log is empty (expired,
    or not yet written by the process that ended it): the saved row's ending, once it has
    ended (with `ended_before`, only if it ended before that moment)."""
    generation = Generation.objects.filter(pk=generation_id).first()
    if generation is None or generation.is_active:
        return []
    if ended_before is not None and not generation.finished_at < ended_before:
        return []
    return ending_events(generation)


def load_now() -> dict:
    """The dashboard's "now": the live workers (with their KV cache), the active
    configuration, the queue."""
    try:
        queue = realtime.queue_length()
    except Exception:
        queue = None  # Redis is away; the series still come from the database
    fields = ("name", "state", "model_name", "loading", "error", "live_requests")
    workers = workers_alive()
    return {
        "workers": [{**{name: getattr(w, name) for name in fields}, "kv_cache": _kv_cache(w)} for w in workers],
        "model": model_config_active().name,
        "celery_queue": queue,
    }


def _kv_cache(worker: Worker) -> dict | None:
    """The worker's KV cache figures in token positions, with the prefix cache's hit rate
    (None before any prompt was read); None while no model serves."""
    if not worker.kv_cache:
        return None
    rate = worker.prefix_hit_rate
    return {**worker.kv_cache, "hit_rate": None if rate is None else round(rate, 4)}
