"""The story socket of docs/protocol.md: authenticate, parse, call a service, forward events."""

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404

from generation import realtime, selectors, services
from storyteller.stories import selectors as story_selectors

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024
# How often a socket checks that the generations it follows still have a live worker; a
# killed worker is reported within this plus services.STALE_RUNNING_S.
WATCH_EVERY_S = 2.0


@dataclass
class _Sent:
    last_seq: int
    other: set = field(default_factory=set)
    # Its place in the queue as last sent (0: it runs; None: not sent), and its request_id.
    position: int | None = None
    request_id: str | None = None
    # While its prompt is read: the `done` of the last `reading` sent.
    read: int = -1
    # When anything of it last came (time.monotonic()): while its events still come, its
    # ending will too, however far behind this socket is.
    heard_at: float = field(default_factory=time.monotonic)


def _owned_story(user, story_id):
    """The user's story outside the trash, or None: the same rule as every page and API."""
    try:
        return story_selectors.story_get_for(user, story_id)
    except Http404:
        return None


class StoryConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        self.story = None
        # generation id -> what this socket has sent of it: the last token's seq and the
        # other event types, so that an event both logged and delivered goes out once.
        self.following: dict[int, _Sent] = {}
        if user is not None and user.is_authenticated:
            story_id = self.scope["url_route"]["kwargs"]["story_id"]
            self.story = await database_sync_to_async(_owned_story)(user, story_id)
        if self.story is None:
            await self.close()  # before accept: the handshake is refused with 403
            return
        await self.accept()
        self.watchdog = asyncio.create_task(self.watch_workers())

    async def watch_workers(self):
        """Every few seconds, for each generation this socket follows, services.generation_watch:
        a lost one is finished (its `error` and `done` arrive like any other event), a new
        `queued` goes out when its place in the queue has changed, and an ending this socket
        missed comes from the row."""
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            for generation_id in list(self.following):
                sent = self.following.get(generation_id)
                waiting = self.waiting(generation_id)
                try:
                    position, ending = await database_sync_to_async(services.generation_watch)(
                        generation_id, waiting=waiting
                    )
                except Exception:
                    log.warning("Could not check generation %s", generation_id, exc_info=True)
                    continue
                # Asked again: its worker's own word that it runs may have come meanwhile.
                if position is not None and position != sent.position and self.waiting(generation_id):
                    sent.position = position
                    await self.send_json(realtime.queued_event(generation_id, position, sent.request_id))
                # An ending missed through Redis (forward() sends it once); not while this
                # socket still hears from it, behind as it may be.
                quiet = sent is not None and time.monotonic() - sent.heard_at > services.ENDING_LATE_S
                for event in ending if quiet else []:
                    await self.forward(event)

    def waiting(self, generation_id: int) -> bool:
        """Whether the writer may still be told a place in the queue: not once it was told it
        runs, nor once its words flow (a late count would only confuse), nor once it ended."""
        sent = self.following.get(generation_id)
        return sent is not None and sent.position != 0 and sent.last_seq < 0

    async def disconnect(self, code):
        watchdog = getattr(self, "watchdog", None)
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        for generation_id in list(self.following):
            await self.channel_layer.group_discard(realtime.group_name(generation_id), self.channel_name)
        self.following.clear()

    async def send_json(self, message: dict) -> None:
        await self.send(text_data=json.dumps(message))

    async def send_error(self, code: str, message: str, **ids) -> None:
        await self.send_json(
            {"type": "error", **{k: v for k, v in ids.items() if v is not None}, "code": code, "message": message}
        )

    # -- client to server -------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > MAX_FRAME_BYTES:
            await self.send_error("too_large", f"Messages are limited to {MAX_FRAME_BYTES // 1024} KiB.")
            return
        if text_data is None:
            await self.send_error("invalid", "Send JSON text frames, not binary ones.")
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            await self.send_error("invalid", "The message is not valid JSON.")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.send_error("invalid", 'A message must be a JSON object with a "type".')
            return
        handler = {
            "generate": self.on_generate,
            "cancel": self.on_cancel,
            "resume": self.on_resume,
            "inspect": self.on_inspect,
            "context": self.on_context,
        }.get(message["type"])
        if handler is None:
            await self.send_error("invalid", f"Unknown message type {message['type']!r}.")
            return
        await handler(message)

    async def request_id(self, message) -> tuple[bool, str | None]:
        """(whether it is valid, the request_id); an invalid one has been answered."""
        try:
            return True, services.request_id_checked(message.get("request_id"))
        except services.GenerationRefused as refused:
            await self.send_error(refused.code, refused.message)
            return False, None

    async def on_generate(self, message):
        valid, request_id = await self.request_id(message)
        if not valid:
            return
        try:
            generation = await database_sync_to_async(services.generation_start)(
                story=self.story,
                user=self.scope["user"],
                text=message.get("text"),
                params=message.get("params"),
                request_id=request_id or "",
                tool=message.get("tool"),
            )
        except services.GenerationRefused as refused:
            await self.send_error(refused.code, refused.message, request_id=request_id)
            return
        position = await database_sync_to_async(selectors.queue_position)(generation)
        await self.send_json(realtime.queued_event(generation.id, position, request_id))
        await self.follow(
            generation.id, after_seq=-1, sent=_Sent(last_seq=-1, position=position, request_id=request_id)
        )

    async def on_cancel(self, message):
        generation_id = message.get("generation_id")
        try:
            await database_sync_to_async(services.generation_cancel)(story=self.story, generation_id=generation_id)
        except services.GenerationRefused as refused:
            await self.send_error(refused.code, refused.message, generation_id=generation_id)

    async def on_resume(self, message):
        generation_id, after_seq = message.get("generation_id"), message.get("after_seq", -1)
        try:
            generation = await database_sync_to_async(services.generation_resume_checked)(
                story=self.story, generation_id=generation_id, after_seq=after_seq
            )
        except services.GenerationRefused as refused:
            ids = {"generation_id": generation_id} if refused.code == "invalid" else {}
            await self.send_error(refused.code, refused.message, **ids)
            return
        await self.follow(generation.id, after_seq=after_seq)

    async def on_inspect(self, message):
        await self.ask_worker(services.inspection_start, message)

    async def on_context(self, message):
        await self.ask_worker(services.context_preview_start, message, story=self.story)

    async def ask_worker(self, start, message, **story) -> None:
        """Hands a request that a worker answers this socket alone (Inspect, the context bar)
        to its service; a refusal is this socket's error."""
        valid, request_id = await self.request_id(message)
        if not valid:
            return
        try:
            await database_sync_to_async(start)(
                user=self.scope["user"], reply_to=self.channel_name, message=message, request_id=request_id, **story
            )
        except services.GenerationRefused as refused:
            await self.send_error(refused.code, refused.message, request_id=request_id)

    async def inspection_result(self, message):
        await self.send_json(message["message"])

    # -- server to client -------------------------------------------------------------

    async def follow(self, generation_id: int, *, after_seq: int, sent: _Sent | None = None) -> None:
        """Joins the generation's group, then sends what it missed past `after_seq`: its
        event log, or once the log has expired, the saved row's ending; and while neither
        has a word yet, how far its prompt is read. Joining first means no event falls in
        between. `sent` is what the caller told the writer already."""
        self.following[generation_id] = sent or _Sent(last_seq=after_seq)
        await self.channel_layer.group_add(realtime.group_name(generation_id), self.channel_name)
        # Off the thread the database calls share: a Redis that went away can keep this one
        # waiting for seconds.
        events = await sync_to_async(realtime.logged_events, thread_sensitive=False)(generation_id)
        if not events:
            events = await database_sync_to_async(selectors.generation_ending)(generation_id)
        for event in events:
            await self.forward(event)

    async def generation_event(self, message):
        await self.forward(message["event"])

    async def forward(self, event: dict) -> None:
        generation_id = event["generation_id"]
        sent = self.following.get(generation_id)
        if sent is None:
            return
        sent.heard_at = time.monotonic()
        if event["type"] == "token":
            if event["seq"] <= sent.last_seq:
                return  # already sent, from the log or the group
            sent.last_seq = event["seq"]
        elif event["type"] == "queued":
            # Its worker's word that it runs (position 0): once, and only before its words.
            if not self.waiting(generation_id):
                return
            sent.position = 0
        elif event["type"] == "reading":
            # Progress before the first word, and only forward: the latest kept report that
            # follow() sends may overtake an older one still on its way through the group.
            if sent.last_seq >= 0 or event["done"] <= sent.read:
                return
            sent.read = event["done"]
        elif event["type"] in sent.other:
            return
        else:
            sent.other.add(event["type"])
        await self.send_json(event)
        if event["type"] == "done":
            del self.following[generation_id]
            await self.channel_layer.group_discard(realtime.group_name(generation_id), self.channel_name)
