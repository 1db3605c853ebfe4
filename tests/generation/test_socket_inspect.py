"""The Inspect panel over the story socket: a worker answers this socket alone."""

import pytest

from generation.worker.engines import engines
from tests.generation.conftest import OPENING, socket_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


async def _inspect(user, story, **message):
    socket = await socket_for(user, story.id)
    await socket.connect()
    await socket.send_json_to({"type": "inspect", "request_id": "i1", **message})
    answer = await socket.receive_json_from(timeout=60)
    await socket.disconnect()
    return answer


async def test_the_tokens_of_a_passage_come_from_the_active_models_tokenizer(alice, story, tiny_model_dir):
    from engine.config import ModelSpec

    answer = await _inspect(alice, story, view="tokens", text=OPENING)
    tokenizer = engines.acquire(ModelSpec(source=str(tiny_model_dir))).tokenizer
    assert (answer["type"], answer["request_id"], answer["view"]) == ("inspection", "i1", "tokens")
    assert [t["id"] for t in answer["tokens"]] == tokenizer(OPENING, add_special_tokens=False)["input_ids"]
    assert answer["count"] == len(answer["tokens"]) and answer["model"] == tiny_model_dir.name


async def test_attention_neighbours_and_the_map_answer(alice, story):
    attention = await _inspect(alice, story, view="attention", text=OPENING, layer=1)
    assert attention["view"] == "attention" and attention["position"] == len(attention["tokens"]) - 1
    assert abs(sum(attention["average"]) - 1) < 1e-3
    neighbours = await _inspect(alice, story, view="neighbours", word="cat")
    assert len(neighbours["neighbours"]) == 10 and neighbours["pieces"]
    points = await _inspect(alice, story, view="map", words=["cat", "sea", "boats"])
    assert [p["word"] for p in points["points"]] == ["cat", "sea", "boats"]


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"view": "colours"}, "view must be one of"),
        ({"view": "tokens", "text": ""}, "text must be a string"),
        ({"view": "attention", "text": OPENING}, "layer must be an integer"),
        ({"view": "attention", "text": OPENING, "layer": 7}, "layer is from 0 to 1; got 7"),
        ({"view": "map", "words": ["one"]}, "2 to 20 words"),
    ],
)
async def test_a_wrong_request_gets_a_clear_error(alice, story, message, words):
    answer = await _inspect(alice, story, **message)
    assert (answer["type"], answer["code"], answer["request_id"]) == ("error", "invalid", "i1")
    assert words in answer["message"]
