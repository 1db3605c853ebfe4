"""Getting a generation's events from the worker to every socket that follows it.

Each event is appended to a per-generation log in Redis first, then sent to the channel
layer group. A socket joins the group first and reads the log second, so an event is
either in the log it reads or arrives through the group afterwards; `seq` removes the
duplicates. The same log serves clients that reconnect and `resume`.

How far a long prompt is read (`reading`) is a progress report, not part of the story: it
goes to the group and is kept once, the latest, beside the log, for a socket that starts
following while the prompt is read.
"""

import asyncio
import json
import logging
import threading
import time
from functools import lru_cache

import redis
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from django.conf import settings

log = logging.getLogger(__name__)


def group_name(generation_id: int) -> str:
    return f"generation.{generation_id}"


def _log_key(generation_id: int) -> str:
    return f"storyteller:generation:{generation_id}:events"


def _reading_key(generation_id: int) -> str:
    return f"storyteller:generation:{generation_id}:reading"


def _cancel_key(generation_id: int) -> str:
    return f"storyteller:generation:{generation_id}:cancel"


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


class _LayerSender:
    """Sends to the channel layer from plain threads through one event loop of its own.

    `async_to_sync` would start a new event loop, and so new Redis connections, for every
    message; a worker streaming many stories at once sends hundreds a second.
    """

    def __init__(self):
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="channel-layer-sender", daemon=True).start()
        # A layer of its own: redis connections belong to the event loop that opened them,
        # and the process-wide layer may be serving another loop (Daphne's, in the web
        # process, where a stale generation is finished); sharing it hangs both.
        self._layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)

    def group_send(self, group: str, message: dict) -> None:
        asyncio.run_coroutine_threadsafe(self._layer.group_send(group, message), self._loop).result(timeout=10)

    def send(self, channel: str, message: dict) -> None:
        asyncio.run_coroutine_threadsafe(self._layer.send(channel, message), self._loop).result(timeout=10)


_sender: _LayerSender | None = None
_sender_lock = threading.Lock()


def _layer_sender() -> _LayerSender:
    global _sender
    with _sender_lock:
        if _sender is None:
            _sender = _LayerSender()
        return _sender


def queued_event(generation_id: int, position: int, request_id: str | None = None) -> dict:
    """The protocol's `queued` message: the generation's place in the queue, 0 once it runs."""
    queued = {"type": "queued", "generation_id": generation_id, "position": position}
    if request_id:
        queued["request_id"] = request_id
    return queued


def publish(generation_id: int, event: dict) -> None:
    """Logs an event ({"type": "token"|"done"|"error", ...}) and sends it to the group."""
    _log(generation_id, [event])
    _layer_sender().group_send(group_name(generation_id), {"type": "generation.event", "event": event})


class Stream:
    """One generation's events as its worker publishes them, kept whole through a Redis outage.

    The worker goes on writing while Redis is away (the row still gets the text every
    second). Once Redis answers again, the stream writes the generation's log anew from its
    own copy, since a restarted Redis may have lost it, and sends the group what it
    missed: a client that resumes finds every `seq`, with no gap.
    """

    # While Redis is away, a new attempt is made at most this often, so that failing
    # connections do not slow down the loop that saves the text.
    RETRY_EVERY_S = 1.0

    # The latest `reading` is kept this long after it was sent: it says something only
    # until the first token, and a prompt is read in pieces of a second or less.
    READING_KEPT_S = 300

    def __init__(self, generation_id: int):
        self.generation_id = generation_id
        self.events: list[dict] = []
        self.delivered = 0
        self.broken = False
        self._next_try = 0.0
        self._next_report = 0.0

    def publish(self, event: dict) -> None:
        self.events.append(event)
        self.flush()

    def flush(self) -> bool:
        """Delivers what is pending; returns whether everything has been delivered."""
        if self.delivered == len(self.events):
            return True
        if self.broken and time.monotonic() < self._next_try:
            return False
        pending = self.events[self.delivered :]
        try:
            if self.broken:
                _rewrite_log(self.generation_id, self.events)
            else:
                _log(self.generation_id, pending)
            for event in pending:
                _layer_sender().group_send(group_name(self.generation_id), {"type": "generation.event", "event": event})
        except Exception as exc:
            # Any failure to reach Redis or the channel layer: the text is safe in the
            # database, and this stream tries again.
            if not self.broken:
                log.warning("Generation %s: cannot publish (%s); retrying", self.generation_id, exc)
            self.broken = True
            self._next_try = time.monotonic() + self.RETRY_EVERY_S
            return False
        if self.broken:
            log.info("Generation %s: publishing again", self.generation_id)
        self.broken = False
        self.delivered = len(self.events)
        return True

    def report(self, event: dict) -> None:
        """Sends a progress report (`reading`) to the group and keeps it as the latest for
        sockets that follow later. It is not logged: a report lost while Redis is away is
        made good by the next one, so none is retried."""
        if self.broken or time.monotonic() < self._next_report:
            return
        try:
            redis_client().set(_reading_key(self.generation_id), json.dumps(event), ex=self.READING_KEPT_S)
            _layer_sender().group_send(group_name(self.generation_id), {"type": "generation.event", "event": event})
        except Exception as exc:
            log.warning("Generation %s: cannot report its progress (%s)", self.generation_id, exc)
            self._next_report = time.monotonic() + self.RETRY_EVERY_S

    def drain(self, timeout: float) -> bool:
        """Keeps trying to deliver what is pending for up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.flush():
            if time.monotonic() >= deadline:
                log.warning("Generation %s: gave up publishing its last events", self.generation_id)
                return False
            time.sleep(min(self.RETRY_EVERY_S, max(0.0, deadline - time.monotonic())))
        return True


def _log(generation_id: int, events: list[dict]) -> None:
    key = _log_key(generation_id)
    pipe = redis_client().pipeline()
    pipe.rpush(key, *(json.dumps(event) for event in events))
    pipe.expire(key, settings.STORYTELLER_EVENT_LOG_TTL)
    pipe.execute()


def _rewrite_log(generation_id: int, events: list[dict]) -> None:
    key = _log_key(generation_id)
    pipe = redis_client().pipeline(transaction=True)
    pipe.delete(key)
    pipe.rpush(key, *(json.dumps(event) for event in events))
    pipe.expire(key, settings.STORYTELLER_EVENT_LOG_TTL)
    pipe.execute()


def logged_events(generation_id: int) -> list[dict]:
    """Every event published so far for a generation (empty once the log has expired),
    then the last `reading` reported while the log has no word yet: what a socket that
    starts following it is sent."""
    client = redis_client()
    events = [json.loads(item) for item in client.lrange(_log_key(generation_id), 0, -1)]
    if any(event["type"] in ("token", "done") for event in events):
        return events
    kept = client.get(_reading_key(generation_id))
    return [*events, json.loads(kept)] if kept else events


def forget(generation_id: int) -> None:
    """Drops any log, report or cancel flag left under this id, by a database that was reset."""
    redis_client().delete(_log_key(generation_id), _reading_key(generation_id), _cancel_key(generation_id))


def request_cancel(generation_id: int) -> None:
    redis_client().set(_cancel_key(generation_id), "1", ex=settings.STORYTELLER_EVENT_LOG_TTL)


def cancel_requested(generation_id: int) -> bool:
    return bool(redis_client().exists(_cancel_key(generation_id)))


_WORKER_PREFIX = "storyteller:worker:"
# A worker whose last heartbeat is older than this is counted as gone: its Redis heartbeat
# expires, and its Worker row shows it offline. Workers report every few seconds.
WORKER_ALIVE_S = 30


def worker_heartbeat(worker: str, state: dict) -> None:
    redis_client().set(_WORKER_PREFIX + worker, json.dumps(state), ex=WORKER_ALIVE_S)


def live_workers() -> dict[str, dict]:
    client = redis_client()
    keys = list(client.scan_iter(match=_WORKER_PREFIX + "*", count=100))
    values = client.mget(keys) if keys else []
    return {k.decode().removeprefix(_WORKER_PREFIX): json.loads(v) for k, v in zip(keys, values, strict=True) if v}


def queue_length(queue: str = "generation") -> int:
    """Tasks waiting in the Celery queue (the Redis transport keeps them in a list)."""
    return redis_client().llen(queue)


def reply(channel: str, message: dict) -> None:
    """Sends one socket (by its channel name) a message of the protocol."""
    _layer_sender().send(channel, {"type": "inspection.result", "message": message})
