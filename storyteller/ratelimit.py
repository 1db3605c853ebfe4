"""Rate limits shared by every web process: a counter per caller and window, in Redis."""

import logging

import redis
from django.conf import settings

from generation.realtime import redis_client

log = logging.getLogger(__name__)

_PREFIX = "storyteller:rate:"


def hit(scope: str, caller: str, *, limit: int, window_s: int) -> int | None:
    """Counts one attempt by `caller` at `scope`. Returns None while the caller is within
    `limit` attempts per `window_s` seconds, and the seconds until they may try again once
    over it.

    When Redis does not answer, the attempt is allowed: a limit exists to stop abuse, and
    an outage of the counter should not stop every writer.
    """
    key = f"{_PREFIX}{scope}:{caller}"
    try:
        pipe = redis_client().pipeline()
        pipe.set(key, 0, ex=window_s, nx=True)  # the window starts with the first attempt
        pipe.incr(key)
        pipe.ttl(key)
        _, count, ttl = pipe.execute()
    except redis.RedisError:
        log.warning("Rate limit %s not checked: Redis does not answer", scope, exc_info=True)
        return None
    return None if count <= limit else max(1, ttl)


def reset_all() -> None:
    """Forgets every count (for tests and for an operator who lifts a block by hand)."""
    client = redis_client()
    keys = list(client.scan_iter(match=_PREFIX + "*", count=1000))
    if keys:
        client.delete(*keys)


def client_address(request) -> str:
    """The caller's address: the peer's, or behind STORYTELLER_PROXY_COUNT proxies the one
    that the outermost of them saw (earlier X-Forwarded-For entries can be forged)."""
    count = settings.STORYTELLER_PROXY_COUNT
    if count:
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if len(forwarded) >= count:
            return forwarded[-count]
    return request.META.get("REMOTE_ADDR", "")
