"""A load test over the public protocol: real websocket clients against a running site.

Writers are made for it in the site's database (`loadtest-N`, each with a story and a
session), so run it with the site's own environment. Active clients generate one story
after another until the time is up; idle clients hold a socket open and must still answer
at the end. Every stream is checked against docs/protocol.md: `seq` from 0 without a gap,
the joined tokens equal to `done.text`.
"""

import asyncio
import ipaddress
import json
import socket
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import websockets
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.sessions.backends.db import SessionStore

from storyteller.accounts.forms import RESERVED_PREFIXES
from storyteller.stories.services import story_create

# Sign-up keeps the prefix for this (storyteller.accounts.forms).
PREFIX = RESERVED_PREFIXES[0]
LOAD_TEST = "Load test writers"
OPENING = "Once upon a time, there was a cat named Whiskers. One morning"
# The answer to this probe shows that a socket is open and its consumer alive.
PROBE = {"type": "resume", "generation_id": -1}


class LoadTestError(Exception):
    pass


def check_loopback(url: str) -> tuple[str, str]:
    """(http base, ws base) of a site on this machine; anything else is refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadTestError(f"--url must be an http:// address on this machine; got {url!r}")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 80)}
    except OSError as exc:
        raise LoadTestError(f"Cannot resolve {parts.hostname!r}: {exc}") from None
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise LoadTestError(f"The load test only runs against this machine (loopback); {parts.hostname} is not.")
    base = f"{parts.scheme}://{parts.netloc}"
    return base, base.replace("http", "ws", 1)


@dataclass
class Writer:
    story_id: int
    session: str


def writers_make(count: int) -> list[Writer]:
    """`count` writers, each with a story and a logged-in session, in the site's database.
    They are members of the LOAD_TEST group, which is how writers_remove knows them. An
    account of that name that someone can log in to (a writer's, made before sign-up kept
    the prefix, or an operator's) is refused; one without a password, as earlier versions
    of the load test left them, is taken into the group."""
    User = get_user_model()
    group, _ = Group.objects.get_or_create(name=LOAD_TEST)
    writers = []
    for n in range(count):
        user, made = User.objects.get_or_create(username=f"{PREFIX}{n}")
        if made:
            user.set_unusable_password()
            user.save()
        if not user.groups.filter(pk=group.pk).exists():
            if user.has_usable_password():
                raise LoadTestError(
                    f"The account {user.username} is not the load test's: someone can log in to it. The load "
                    "test will neither use nor delete it; rename it in the admin, then run the load test again."
                )
            user.groups.add(group)
        story = story_create(owner=user, title=f"Load test {n}", text=OPENING)
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.create()
        writers.append(Writer(story.id, session.session_key))
    return writers


def writers_remove() -> int:
    """Deletes the load test's writers (and their stories): its group's members only."""
    deleted, _ = get_user_model().objects.filter(username__startswith=PREFIX, groups__name=LOAD_TEST).delete()
    return deleted


@dataclass
class Tally:
    completed: int = 0
    unfinished: int = 0
    lost: int = 0
    out_of_order: int = 0
    new_tokens: int = 0
    ttft_s: list = field(default_factory=list)
    # Each generation's new tokens after its first, over the time from its first to `done`:
    # what bench_generation reports as the engine's per-story rate, here through the site.
    stream_rates: list = field(default_factory=list)
    errors: dict = field(default_factory=dict)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


async def _connect(ws_base: str, origin: str, writer: Writer):
    return await websockets.connect(
        f"{ws_base}/ws/stories/{writer.story_id}/",
        additional_headers={"Cookie": f"sessionid={writer.session}"},
        origin=origin,
        open_timeout=30,
        max_size=2**24,
    )


async def _generation(ws, tally: Tally, params: dict, deadline: float) -> None:
    """One generate request, followed to its `done` (or the deadline), checked."""
    sent = time.monotonic()
    await ws.send(json.dumps({"type": "generate", "text": OPENING, "params": params}))
    generation_id, next_seq, texts, first = None, 0, [], None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            tally.unfinished += 1
            if generation_id is not None:
                await ws.send(json.dumps({"type": "cancel", "generation_id": generation_id}))
            return
        message = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        kind = message.get("type")
        if kind == "queued":
            generation_id = message["generation_id"]
        elif kind == "token":
            if first is None:
                first = time.monotonic()
            if message["seq"] > next_seq:
                tally.lost += message["seq"] - next_seq
            elif message["seq"] < next_seq:
                tally.out_of_order += 1
            next_seq = max(next_seq, message["seq"] + 1)
            texts.append(message["text"])
        elif kind == "error" and message.get("generation_id") in (None, generation_id):
            tally.error(message["code"])
            if generation_id is None:
                return  # refused before it started
        elif kind == "done":
            if "".join(texts) != message["text"] and not tally.lost:
                tally.out_of_order += 1  # the stream and the saved text disagree
            tally.completed += 1
            tally.new_tokens += message["stats"]["new_tokens"]
            if first is not None:
                tally.ttft_s.append(first - sent)
                streamed = time.monotonic() - first
                if message["stats"]["new_tokens"] > 1 and streamed > 0:
                    tally.stream_rates.append((message["stats"]["new_tokens"] - 1) / streamed)
            return


async def _active(ws_base, origin, writer, tally, params, stop_at, hard_deadline, pause):
    try:
        ws = await _connect(ws_base, origin, writer)
    except Exception as exc:
        tally.error(f"connect: {type(exc).__name__}")
        return
    try:
        while time.monotonic() < stop_at:
            await _generation(ws, tally, params, hard_deadline)
            await asyncio.sleep(pause)
    except Exception as exc:
        tally.error(f"socket: {type(exc).__name__}")
    finally:
        await ws.close()


async def _answers(ws) -> bool:
    try:
        await ws.send(json.dumps(PROBE))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
        return answer.get("type") == "error" and answer.get("code") == "not_found"
    except Exception:
        return False


async def run(
    url: str, writers: list[Writer], *, clients: int, idle: int, duration: float, pause: float, params: dict
) -> dict:
    base, ws_base = check_loopback(url)
    tally = Tally()
    idle_sockets = []
    for n in range(idle):
        try:
            idle_sockets.append(await _connect(ws_base, base, writers[n % len(writers)]))
        except Exception as exc:
            tally.error(f"connect: {type(exc).__name__}")
    started = time.monotonic()
    stop_at = started + duration
    hard_deadline = stop_at + max(60.0, duration)
    await asyncio.gather(
        *(_active(ws_base, base, writers[n], tally, params, stop_at, hard_deadline, pause) for n in range(clients))
    )
    wall = time.monotonic() - started
    idle_answering = sum(await asyncio.gather(*(_answers(ws) for ws in idle_sockets)))
    for ws in idle_sockets:
        await ws.close()
    ttft = sorted(tally.ttft_s)
    return {
        "url": base,
        "clients": clients,
        "idle": idle,
        "duration_s": round(wall, 1),
        "generations_completed": tally.completed,
        "generations_unfinished": tally.unfinished,
        "messages_lost": tally.lost,
        "messages_out_of_order": tally.out_of_order,
        "ttft_p50_ms": round(statistics.median(ttft) * 1000) if ttft else None,
        "ttft_p95_ms": round(ttft[min(len(ttft) - 1, int(0.95 * len(ttft)))] * 1000) if ttft else None,
        "tokens_per_s": round(tally.new_tokens / wall, 1) if wall else 0.0,
        "stream_tokens_per_s_p50": round(statistics.median(tally.stream_rates), 2) if tally.stream_rates else None,
        "new_tokens": tally.new_tokens,
        "idle_answering": idle_answering,
        "errors": tally.errors,
    }
