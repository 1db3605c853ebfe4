"""The editor's context bar over the story socket: a worker counts, with the serving
model's tokenizer and budget, how the window would be spent on a text now, and how much of
it the prefix cache holds."""

import pytest
from channels.db import database_sync_to_async

from engine.config import ModelSpec
from generation.worker.engines import engines
from storyteller.stories.services import draft_save, lore_create
from tests.generation.conftest import OPENING, receive_until, socket_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

PARAGRAPH = "The rain fell on the old town, and the lamps of the harbour burned low. " * 4


async def _ask(socket, **message):
    await socket.send_json_to({"type": "context", "request_id": "context-1", **message})
    return await socket.receive_json_from(timeout=60)


def count(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


async def test_the_parts_are_counted_with_the_models_tokenizer(alice, story, tiny_model_dir):
    def set_up():
        lore_create(story=story, keys="harbour", text="The harbour is small.")
        return draft_save(
            story=story, base_revision=1, memory="Mara keeps a lantern.", note="Keep it gentle.", note_depth=1
        )

    await database_sync_to_async(set_up)()
    text = f"{OPENING}\n{PARAGRAPH}\nMara walked to the harbour."
    socket = await socket_for(alice, story.id)
    await socket.connect()
    answer = await _ask(socket, text=text, max_new_tokens=40)
    await socket.disconnect()

    engine = engines.acquire(ModelSpec(source=str(tiny_model_dir)))
    assert (answer["type"], answer["request_id"], answer["model"]) == ("context", "context-1", tiny_model_dir.name)
    assert [part["kind"] for part in answer["parts"]] == ["memory", "lore", "story", "note", "story"]
    assert answer["story_tokens"] == count(engine.tokenizer, text)
    assert answer["story_read"] == sum(p["tokens"] for p in answer["parts"] if p["kind"] == "story")
    assert answer["prompt_tokens"] == sum(p["tokens"] for p in answer["parts"])
    assert (answer["window"], answer["budget"]) == (engine.context_window, engine.prompt_budget(40))
    assert answer["max_new_tokens"] == 40 and answer["story_left_out"] == 0 and answer["warnings"] == []
    # The Lorebook's Test box reads which entries fired on the text, and why.
    [line] = answer["lore"]
    assert (line["name"], line["fires"], line["placed"]) == ("harbour", True, True)
    assert line["matches"][0]["text"] == "harbour" and "harbour" in line["matches"][0]["around"]


async def test_a_story_longer_than_the_window_is_told_what_is_left_out(alice, story):
    text = "\n".join([PARAGRAPH] * 12)
    socket = await socket_for(alice, story.id)
    await socket.connect()
    answer = await _ask(socket, text=text)
    await socket.disconnect()
    assert answer["story_left_out"] > 0
    assert answer["story_read"] + answer["story_left_out"] == answer["story_tokens"]
    assert any("are left out" in warning for warning in answer["warnings"])
    # The story's own length setting (the default here) leaves room for the continuation.
    assert answer["prompt_tokens"] <= answer["budget"] == answer["window"] - answer["max_new_tokens"]


async def test_a_story_nearly_filling_its_room_is_warned_before_anything_is_left_out(alice, story):
    socket = await socket_for(alice, story.id)
    await socket.connect()
    small = await _ask(socket, text=PARAGRAPH, max_new_tokens=40)
    assert small["story_left_out"] == 0 and small["warnings"] == []
    # The same text with less room: about 95 % of it filled, nothing left out yet.
    room = int(small["story_tokens"] / 0.95) + 2
    nearly = await _ask(socket, text=PARAGRAPH, max_new_tokens=small["window"] - room)
    await socket.disconnect()
    assert nearly["story_left_out"] == 0
    assert any("starts to be left out" in warning for warning in nearly["warnings"]), nearly


async def test_after_a_generation_its_prompt_and_words_are_counted_as_cached(alice, story):
    text = f"{OPENING}\n{PARAGRAPH}"
    socket = await socket_for(alice, story.id)
    await socket.connect()
    before = await _ask(socket, text=text, max_new_tokens=30)
    await socket.send_json_to({"type": "generate", "text": text, "params": {"max_new_tokens": 30, "seed": 1}})
    done = (await receive_until(socket, "done", timeout=60))[-1]
    after = await _ask(socket, text=text + done["text"], max_new_tokens=30)
    await socket.disconnect()
    assert before["cached_tokens"] == 0
    assert after["cached_tokens"] >= before["story_tokens"] // 16 * 16 - 16 > 0


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"text": 5}, "text must be a string"),
        ({"text": "x", "max_new_tokens": 0}, "max_new_tokens"),
        ({"text": "x", "max_new_tokens": "many"}, "max_new_tokens"),
        ({"text": "x" * 200_001}, "text must be a string"),
    ],
)
async def test_a_wrong_request_gets_a_clear_error(alice, story, message, words):
    socket = await socket_for(alice, story.id)
    await socket.connect()
    answer = await _ask(socket, **message)
    await socket.disconnect()
    assert (answer["type"], answer["code"], answer["request_id"]) == ("error", "invalid", "context-1")
    assert words in answer["message"]
