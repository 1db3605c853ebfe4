from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from storyteller.asgi import application

OPENING = "Once upon a time, there was a cat named Whiskers."


def session_headers(user, origin="http://localhost"):
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    return [(b"cookie", cookie.encode()), (b"origin", origin.encode())]


async def socket_for(user, story_id, origin="http://localhost"):
    if user is None:
        headers = [(b"origin", origin.encode())]
    else:
        headers = await database_sync_to_async(session_headers)(user, origin)
    return WebsocketCommunicator(application, f"/ws/stories/{story_id}/", headers=headers)


async def receive_until(communicator, kind, timeout=30):
    """Every message up to and including the first of type `kind`."""
    messages = []
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        messages.append(message)
        if message["type"] == kind:
            return messages


async def queued_until_running(next_message) -> dict:
    """Reads a new generation's `queued` messages with `next_message()`, through the one that
    says it runs (position 0, which comes before any other message of it); returns the
    first, which names the generation."""
    first = message = await next_message()
    assert first["type"] == "queued", first
    while message["position"] != 0:
        message = await next_message()
        assert message["type"] == "queued", message
    return first


async def receive_queued(communicator, timeout=30) -> dict:
    return await queued_until_running(lambda: communicator.receive_json_from(timeout=timeout))
