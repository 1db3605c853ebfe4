"""The story socket with a real Redis, a real Celery worker process and the tiny model."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from generation.models import Generation
from storyteller.stories.models import Story
from tests.generation.conftest import OPENING, receive_queued, receive_until, socket_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


async def test_it_streams_contiguous_tokens_that_join_to_done_text(alice, story):
    socket = await socket_for(alice, story.id)
    connected, _ = await socket.connect()
    assert connected
    await socket.send_json_to(
        {"type": "generate", "request_id": "c1", "text": OPENING, "params": {"max_new_tokens": 40, "seed": 7}}
    )
    messages = await receive_until(socket, "done")
    await socket.disconnect()

    queued = [m for m in messages if m["type"] == "queued"]
    tokens, done = messages[len(queued) : -1], messages[-1]
    # In line (1: the next to start), then running (0), before any word; or running at once.
    assert queued[0]["position"] in (0, 1) and queued[-1]["position"] == 0 and len(queued) <= 2
    assert all(m["request_id"] == "c1" for m in queued)
    assert tokens and all(m["type"] == "token" for m in tokens)
    assert [m["seq"] for m in tokens] == list(range(len(tokens)))
    assert "".join(m["text"] for m in tokens) == done["text"]
    assert done["generation_id"] == queued[0]["generation_id"]
    assert done["finish_reason"] in ("length", "eos")
    assert done["stats"]["prompt_tokens"] > 0 and done["stats"]["new_tokens"] > 0

    generation = await database_sync_to_async(Generation.objects.get)(pk=done["generation_id"])
    assert generation.status == "finished"
    assert generation.output == done["text"]
    assert generation.seed == 7 and generation.params["max_new_tokens"] == 40
    assert generation.prompt_text == OPENING
    assert generation.started_at and generation.finished_at and generation.ttft_ms is not None
    assert generation.started_at <= generation.admitted_at <= generation.finished_at


async def test_the_same_seed_writes_the_same_continuation(alice, story):
    socket = await socket_for(alice, story.id)
    await socket.connect()
    texts = []
    for _ in range(2):
        await socket.send_json_to({"type": "generate", "text": OPENING, "params": {"max_new_tokens": 20, "seed": 3}})
        texts.append((await receive_until(socket, "done"))[-1]["text"])
    await socket.disconnect()
    assert texts[0] == texts[1] and texts[0]


async def test_cancel_stops_the_generation_and_keeps_the_text_so_far(alice, story):
    socket = await socket_for(alice, story.id)
    await socket.connect()
    await socket.send_json_to({"type": "generate", "text": OPENING, "params": {"max_new_tokens": 400, "seed": 1}})
    queued = await receive_queued(socket)
    first = await socket.receive_json_from(timeout=30)
    assert first["type"] == "token"
    await socket.send_json_to({"type": "cancel", "generation_id": queued["generation_id"]})
    rest = await receive_until(socket, "done")
    await socket.disconnect()

    done = rest[-1]
    tokens = [first, *[m for m in rest if m["type"] == "token"]]
    assert done["finish_reason"] == "cancelled"
    assert done["stats"]["new_tokens"] < 400
    assert "".join(m["text"] for m in tokens) == done["text"]
    generation = await database_sync_to_async(Generation.objects.get)(pk=queued["generation_id"])
    assert generation.finish_reason == "cancelled" and generation.output == done["text"]


async def test_a_second_generate_while_one_runs_is_refused_as_busy(alice, story):
    socket = await socket_for(alice, story.id)
    await socket.connect()
    await socket.send_json_to({"type": "generate", "text": OPENING, "params": {"max_new_tokens": 400}})
    queued = await socket.receive_json_from(timeout=30)
    await socket.send_json_to({"type": "generate", "request_id": "again", "text": OPENING})
    messages = await receive_until(socket, "error")
    assert messages[-1]["code"] == "busy" and messages[-1]["request_id"] == "again"
    await socket.send_json_to({"type": "cancel", "generation_id": queued["generation_id"]})
    await receive_until(socket, "done")
    await socket.disconnect()


async def test_a_client_that_reconnects_resumes_after_the_last_seq_it_saw(alice, story):
    socket = await socket_for(alice, story.id)
    await socket.connect()
    await socket.send_json_to({"type": "generate", "text": OPENING, "params": {"max_new_tokens": 60, "seed": 9}})
    first_run = await receive_until(socket, "done")
    await socket.disconnect()
    tokens = [m for m in first_run if m["type"] == "token"]
    assert len(tokens) >= 2
    done = first_run[-1]

    again = await socket_for(alice, story.id)
    await again.connect()
    await again.send_json_to({"type": "resume", "generation_id": done["generation_id"], "after_seq": 0})
    resumed = await receive_until(again, "done")
    await again.disconnect()
    assert [m["seq"] for m in resumed[:-1]] == list(range(1, len(tokens)))
    assert tokens[0]["text"] + "".join(m["text"] for m in resumed[:-1]) == done["text"]
    assert resumed[-1] == done


async def test_a_socket_left_idle_longer_than_redis_read_timeouts_still_generates(alice, story):
    # The channel layer blocks on Redis for up to 5 s at a time; a read timeout that is
    # not longer than that used to drop idle sockets.
    socket = await socket_for(alice, story.id)
    await socket.connect()
    await asyncio.sleep(6)
    await socket.send_json_to({"type": "generate", "text": OPENING, "params": {"max_new_tokens": 5, "seed": 1}})
    messages = await receive_until(socket, "done")
    await socket.disconnect()
    assert messages[0]["type"] == "queued" and messages[-1]["type"] == "done"


async def test_story_settings_saved_after_the_socket_opened_are_used(alice, story):
    socket = await socket_for(alice, story.id)
    await socket.connect()
    await Story.objects.filter(pk=story.pk).aupdate(settings={"max_new_tokens": 3, "seed": 5})
    await socket.send_json_to({"type": "generate", "text": OPENING})
    done = (await receive_until(socket, "done"))[-1]
    await socket.disconnect()
    generation = await Generation.objects.aget(pk=done["generation_id"])
    assert (generation.params["max_new_tokens"], generation.seed) == (3, 5)
    assert done["stats"]["new_tokens"] <= 3


async def test_several_stories_generate_at_once_each_with_its_own_stream(alice, story):
    others = [await Story.objects.acreate(owner=alice, title=f"Other {i}", text="") for i in range(2)]
    sockets = [await socket_for(alice, s.id) for s in [story, *others]]
    for index, socket in enumerate(sockets):
        await socket.connect()
        await socket.send_json_to(
            {"type": "generate", "text": OPENING, "params": {"max_new_tokens": 80, "seed": index, "temperature": 1.0}}
        )
    results = [await receive_until(socket, "done") for socket in sockets]
    for socket in sockets:
        await socket.disconnect()
    ids = set()
    for messages in results:
        queued = [m for m in messages if m["type"] == "queued"]
        tokens, done = messages[len(queued) : -1], messages[-1]
        ids.add(queued[0]["generation_id"])
        assert [m["seq"] for m in tokens] == list(range(len(tokens)))
        assert all(m["generation_id"] == queued[0]["generation_id"] for m in [*tokens, done])
        assert "".join(m["text"] for m in tokens) == done["text"]
    assert len(ids) == 3
    assert len({messages[-1]["text"] for messages in results}) == 3


@pytest.mark.parametrize(("status", "minutes"), [("running", 2), ("queued", 20)])
async def test_a_generation_whose_worker_went_away_does_not_lock_the_story(alice, story, status, minutes):
    from datetime import timedelta

    from django.utils import timezone

    lost = await Generation.objects.acreate(
        story=story, user=alice, seed=1, status=status, output="The text so far", prompt_text=OPENING
    )
    await Generation.objects.filter(pk=lost.pk).aupdate(updated_at=timezone.now() - timedelta(minutes=minutes))
    socket = await socket_for(alice, story.id)
    await socket.connect()
    await socket.send_json_to({"type": "generate", "text": OPENING, "params": {"max_new_tokens": 5, "seed": 1}})
    messages = await receive_until(socket, "done")
    await socket.disconnect()
    assert messages[0]["type"] == "queued" and messages[0]["generation_id"] != lost.pk
    await lost.arefresh_from_db()
    assert (lost.status, lost.finish_reason) == ("finished", "error")
    assert lost.output == "The text so far" and "worker stopped" in lost.error_message


async def test_a_recent_running_generation_still_makes_the_story_busy(alice, story):
    await Generation.objects.acreate(story=story, user=alice, seed=1, status="running", prompt_text=OPENING)
    socket = await socket_for(alice, story.id)
    await socket.connect()
    await socket.send_json_to({"type": "generate", "text": OPENING})
    answer = await socket.receive_json_from(timeout=10)
    await socket.disconnect()
    assert answer["type"] == "error" and answer["code"] == "busy"


async def test_the_model_reads_memory_triggered_lore_and_the_note(alice, story):
    def add_context():
        Story.objects.filter(pk=story.pk).update(memory="Whiskers is a grey cat.", note="Keep it calm.", note_depth=1)
        story.lore.create(keys="boats, pier", text="The boats are red.")
        story.lore.create(keys="dragon", text="Dragons sleep.")

    await database_sync_to_async(add_context)()
    socket = await socket_for(alice, story.id)
    await socket.connect()
    text = "The cat went out.\nShe watched the boats come home."
    await socket.send_json_to({"type": "generate", "text": text, "params": {"max_new_tokens": 8, "seed": 2}})
    done = (await receive_until(socket, "done"))[-1]
    await socket.disconnect()

    kinds = [part["kind"] for part in done["context"]["parts"]]
    assert kinds == ["memory", "lore", "story", "note", "story"]
    assert done["context"]["warnings"] == []
    assert done["stats"]["prompt_tokens"] == sum(part["tokens"] for part in done["context"]["parts"])
    generation = await database_sync_to_async(Generation.objects.get)(pk=done["generation_id"])
    texts = [part["text"] for part in generation.context["parts"]]
    assert texts == [
        "Whiskers is a grey cat.\n\n",
        "The boats are red.\n",
        "The cat went out.\n",
        "[Author's note: Keep it calm.]\n",
        "She watched the boats come home.",
    ]


async def test_memory_too_long_for_the_context_is_refused_with_a_clear_error(alice, story):
    def long_memory():
        Story.objects.filter(pk=story.pk).update(memory="The cat sat on the mat. " * 400)

    await database_sync_to_async(long_memory)()
    socket = await socket_for(alice, story.id)
    await socket.connect()
    await socket.send_json_to({"type": "generate", "text": OPENING, "params": {"max_new_tokens": 8}})
    messages = await receive_until(socket, "done")
    await socket.disconnect()

    error = next(m for m in messages if m["type"] == "error")
    assert error["code"] == "too_large" and "Memory" in error["message"] and "Shorten" in error["message"]
    assert messages[-1]["finish_reason"] == "error"


async def test_a_socket_that_follows_a_failed_generation_without_its_event_log_gets_the_error_then_done(alice, story):
    """The row's ending is what a socket gets when the log is gone (expired) or not yet
    written by the worker that refused the generation: the error comes first there too."""
    from generation import realtime

    failed = await Generation.objects.acreate(
        story=story, user=alice, seed=1, status="finished", finish_reason="error", error_code="too_large",
        error_message="Memory is 2,400 tokens; the model reads 500. Shorten it.", prompt_text=OPENING,
    )  # fmt: skip
    await database_sync_to_async(realtime.forget)(failed.pk)
    socket = await socket_for(alice, story.id)
    await socket.connect()
    await socket.send_json_to({"type": "resume", "generation_id": failed.pk})
    messages = await receive_until(socket, "done")
    await socket.disconnect()
    assert [m["type"] for m in messages] == ["error", "done"]
    assert messages[0]["code"] == "too_large" and "Shorten it." in messages[0]["message"]
    assert messages[1]["finish_reason"] == "error"


async def test_a_flood_of_generate_messages_is_refused_without_costing_model_time(alice, story, settings):
    settings.STORYTELLER_GENERATIONS_PER_MINUTE = 3
    socket = await socket_for(alice, story.id)
    await socket.connect()
    request = {"type": "generate", "text": OPENING, "params": {"max_new_tokens": 400, "seed": 1}}
    for n in range(6):
        await socket.send_json_to({**request, "request_id": f"r{n}"})
    answers = {}
    while len(answers) < 6:
        message = await socket.receive_json_from(timeout=30)
        if message.get("request_id"):
            answers[message["request_id"]] = message
    assert answers["r0"]["type"] == "queued"
    assert [answers[f"r{n}"]["code"] for n in range(1, 6)] == ["busy", "busy", "limit", "limit", "limit"]
    assert "3 continuations in a minute" in answers["r3"]["message"]
    assert await Generation.objects.filter(story=story).acount() == 1

    # The socket stays usable: the one generation runs to its end.
    await socket.send_json_to({"type": "cancel", "generation_id": answers["r0"]["generation_id"]})
    messages = await receive_until(socket, "done")
    await socket.disconnect()
    assert messages[-1]["generation_id"] == answers["r0"]["generation_id"]


async def test_a_story_that_records_choices_keeps_five_candidates_per_token(alice, story):
    socket = await socket_for(alice, story.id)
    await socket.connect()
    texts = {}
    for record in (True, False):
        await socket.send_json_to(
            {"type": "generate", "text": OPENING, "params": {"max_new_tokens": 8, "seed": 2, "record_choices": record}}
        )
        texts[record] = (await receive_until(socket, "done"))[-1]
    await socket.disconnect()

    recorded, plain = [await Generation.objects.aget(pk=texts[r]["generation_id"]) for r in (True, False)]
    assert recorded.output == plain.output  # recording changes nothing of the text
    assert plain.choices == [] and len(recorded.choices) == recorded.new_tokens
    assert "".join(choice["text"] for choice in recorded.choices) == recorded.output
    for choice in recorded.choices:
        probabilities = [p for _, _, p in choice["top"]]
        assert 1 <= len(choice["top"]) <= 5 and probabilities == sorted(probabilities, reverse=True)
        assert all(0 < p <= 1 for p in probabilities)


async def test_an_ending_that_never_came_through_redis_comes_from_the_row(alice, story):
    generation = await Generation.objects.acreate(
        story=story, user=alice, seed=1, status="running", admitted_at=timezone.now(), output="Half"
    )
    socket = await socket_for(alice, story.id)
    await socket.connect()
    await socket.send_json_to({"type": "resume", "generation_id": generation.pk, "after_seq": -1})
    assert await socket.receive_nothing(timeout=1)
    # Ended by a process whose events went nowhere (its Redis was away when it published).
    await Generation.objects.filter(pk=generation.pk).aupdate(
        status="finished", finish_reason="length", output="Half a story.", finished_at=timezone.now()
    )
    messages = await receive_until(socket, "done", timeout=15)
    await socket.disconnect()
    done = messages[-1]
    assert [m["type"] for m in messages[:-1]] in ([], ["queued"])  # that it ran, if the socket asked in time
    assert (done["type"], done["generation_id"], done["text"]) == ("done", generation.pk, "Half a story.")
