"""What the story socket refuses, and how: the socket stays open after every bad message."""

import json

import pytest
from channels.db import database_sync_to_async

from generation.models import Generation
from storyteller.stories.services import story_trash
from tests.generation.conftest import OPENING, socket_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_anonymous_socket_is_refused_at_the_handshake(story):
    socket = await socket_for(None, story.id)
    connected, _ = await socket.connect()
    await socket.disconnect()
    assert not connected


async def test_another_writers_story_is_refused_at_the_handshake(bob, story):
    socket = await socket_for(bob, story.id)
    connected, _ = await socket.connect()
    await socket.disconnect()
    assert not connected


async def test_a_story_in_the_trash_is_refused_at_the_handshake(alice, story):
    await database_sync_to_async(story_trash)(story)
    socket = await socket_for(alice, story.id)
    connected, _ = await socket.connect()
    await socket.disconnect()
    assert not connected


async def test_a_foreign_origin_is_refused(alice, story):
    socket = await socket_for(alice, story.id, origin="http://evil.example")
    connected, _ = await socket.connect()
    await socket.disconnect()
    assert not connected


async def _answer(socket, payload):
    if isinstance(payload, bytes):
        await socket.send_to(bytes_data=payload)
    else:
        await socket.send_to(text_data=payload if isinstance(payload, str) else json.dumps(payload))
    return await socket.receive_json_from(timeout=10)


@pytest.mark.parametrize(
    ("payload", "code", "words"),
    [
        ("not json", "invalid", "not valid JSON"),
        (b"\x00\x01", "invalid", "binary"),
        ([1, 2], "invalid", "type"),
        ({"type": "dance"}, "invalid", "dance"),
        ({"type": "generate"}, "invalid", "text"),
        ({"type": "generate", "text": 5}, "invalid", "text"),
        ({"type": "generate", "text": "x", "params": {"temperature": 9}}, "invalid", "temperature"),
        ({"type": "generate", "text": "x", "params": {"top_p": 0}}, "invalid", "top_p"),
        ({"type": "generate", "text": "x", "params": {"max_new_tokens": True}}, "invalid", "max_new_tokens"),
        ({"type": "generate", "text": "x", "params": {"warmth": 1}}, "invalid", "warmth"),
        ({"type": "generate", "text": "x", "params": {"stop": "\n"}}, "invalid", "stop"),
        ({"type": "generate", "text": "x", "params": {"min_p": 2}}, "invalid", "min_p"),
        ({"type": "generate", "text": "x", "params": {"dry_multiplier": -1}}, "invalid", "dry_multiplier"),
        ({"type": "generate", "text": "x", "params": {"dry_base": 9}}, "invalid", "dry_base"),
        ({"type": "generate", "text": "x", "params": {"dry_allowed_length": 0}}, "invalid", "dry_allowed_length"),
        (
            {"type": "generate", "text": "x", "params": {"dry_sequence_breakers": [""]}},
            "invalid",
            "dry_sequence_breakers",
        ),
        ({"type": "generate", "text": "x", "params": {"xtc_threshold": 0.9}}, "invalid", "xtc_threshold"),
        ({"type": "generate", "text": "x", "params": {"xtc_probability": "often"}}, "invalid", "xtc_probability"),
        ({"type": "generate", "text": "x", "params": {"banned": ["ok"] * 101}}, "invalid", "banned"),
        ({"type": "generate", "text": "x", "params": {"banned": ["x" * 101]}}, "invalid", "banned"),
        ({"type": "generate", "text": "x", "params": {"banned": ["   "]}}, "invalid", "banned"),
        ({"type": "generate", "text": "x", "params": {"bias": {"dragon": 11}}}, "invalid", "bias"),
        ({"type": "generate", "text": "x", "params": {"bias": ["dragon"]}}, "invalid", "bias"),
        ({"type": "generate", "text": "x", "params": {"bias": {"": 1}}}, "invalid", "bias"),
        ({"type": "generate", "text": "x", "params": []}, "invalid", "params"),
        ({"type": "generate", "text": "x", "request_id": 7}, "invalid", "request_id"),
        ({"type": "cancel", "generation_id": 999999}, "not_found", "999999"),
        ({"type": "cancel", "generation_id": "abc"}, "not_found", "abc"),
        ({"type": "resume", "generation_id": 999999}, "not_found", "999999"),
        ({"type": "resume", "generation_id": 1, "after_seq": "x"}, "invalid", "after_seq"),
        ("x" * (256 * 1024 + 1), "too_large", "256 KiB"),
    ],
)
async def test_a_bad_message_gets_an_error_and_the_socket_stays_open(alice, story, payload, code, words):
    socket = await socket_for(alice, story.id)
    await socket.connect()
    answer = await _answer(socket, payload)
    assert answer["type"] == "error" and answer["code"] == code
    assert words in answer["message"]
    # Still open and answering.
    assert (await _answer(socket, {"type": "dance"}))["code"] == "invalid"
    await socket.disconnect()
    assert not await Generation.objects.filter(story=story).aexists()


async def test_text_over_the_limit_is_refused_as_too_large(alice, story, settings):
    settings.STORYTELLER_MAX_TEXT_CHARS = 10
    socket = await socket_for(alice, story.id)
    await socket.connect()
    answer = await _answer(socket, {"type": "generate", "request_id": "big", "text": OPENING})
    await socket.disconnect()
    assert answer["code"] == "too_large" and answer["request_id"] == "big"


async def test_cancel_of_another_storys_generation_is_not_found(alice, story):
    from channels.db import database_sync_to_async

    from storyteller.stories.services import story_create

    other = await database_sync_to_async(story_create)(owner=alice, title="Other", text="")
    generation = await Generation.objects.acreate(story=other, user=alice, seed=1, status="finished")
    socket = await socket_for(alice, story.id)
    await socket.connect()
    answer = await _answer(socket, {"type": "cancel", "generation_id": generation.id})
    await socket.disconnect()
    assert answer["code"] == "not_found"


async def test_a_value_outside_what_the_configuration_allows_is_refused(alice, story, tiny_model_dir):
    from generation.models import ModelConfig

    await ModelConfig.objects.acreate(
        name="Narrow", source=str(tiny_model_dir), is_active=True, writer_max_temperature=1
    )
    socket = await socket_for(alice, story.id)
    await socket.connect()
    answer = await _answer(socket, {"type": "generate", "text": OPENING, "params": {"temperature": 1.5}})
    await socket.disconnect()
    assert (answer["code"], answer["message"]) == ("invalid", "On this site temperature is from 0.0 to 1.0; got 1.5.")
    assert not await Generation.objects.filter(story=story).aexists()
