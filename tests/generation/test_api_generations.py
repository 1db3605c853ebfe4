"""Generations over HTTP: start one, read it back; refusals carry the protocol's codes
with a fitting status (429 for limits)."""

import json
import time

import pytest

from generation.models import Generation, UsageLimit
from tests.generation.conftest import OPENING


def start(client, story, **body):
    return client.post(
        f"/api/stories/{story.id}/generations/",
        json.dumps({"text": OPENING, **body}),
        content_type="application/json",
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_generation_started_over_http_is_written_and_read_back(alice_client, story):
    samplers = {"min_p": 0.05, "dry_multiplier": 0.8, "dry_sequence_breakers": ["\n"], "xtc_probability": 0.5}
    answer = start(alice_client, story, request_id="h1", params={"max_new_tokens": 12, "seed": 4, **samplers})
    assert answer.status_code == 202
    started = answer.json()
    # Next in line: nothing waits ahead of it, and it does not run yet.
    assert (started["status"], started["request_id"], started["position"]) == ("queued", "h1", 1)

    url = f"/api/stories/{story.id}/generations/{started['generation_id']}/"
    deadline = time.monotonic() + 60
    while (read := alice_client.get(url).json())["status"] != "finished":
        assert time.monotonic() < deadline, read
        time.sleep(0.1)
    saved = Generation.objects.get(pk=started["generation_id"])
    assert read["text"] == saved.output and read["text"]
    assert read["finish_reason"] in ("length", "eos") and read["stats"]["new_tokens"] == saved.new_tokens
    assert read["params"]["seed"] == 4
    assert {name: read["params"][name] for name in samplers} == samplers


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"text": 5}, 400, "invalid", "text must be a string"),
        ({"params": {"temperature": 9}}, 400, "invalid", "temperature"),
        ({"params": {"min_p": -0.5}}, 400, "invalid", "min_p"),
        ({"params": {"dry_sequence_breakers": "\n"}}, 400, "invalid", "dry_sequence_breakers"),
        ({"params": {"xtc_probability": 2}}, 400, "invalid", "xtc_probability"),
        ({"request_id": 7}, 400, "invalid", "request_id"),
        ({"params": {"max_new_tokens": 50}}, 429, "limit", "at most 40 new tokens"),
    ],
)
def test_a_refused_request_gets_its_code_and_status_and_records_nothing(
    alice_client, alice, story, body, status, code, words
):
    UsageLimit.objects.create(user=alice, max_new_tokens=40)
    answer = start(alice_client, story, **body)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code and words in answer.json()["error"]["message"]
    assert not Generation.objects.exists()


@pytest.mark.django_db
def test_too_many_requests_in_a_minute_get_429_and_a_running_story_409(alice_client, story, settings):
    settings.STORYTELLER_GENERATIONS_PER_MINUTE = 1
    assert start(alice_client, story).status_code == 202
    busy = start(alice_client, story)
    assert (busy.status_code, busy.json()["error"]["code"]) == (429, "limit")
    settings.STORYTELLER_GENERATIONS_PER_MINUTE = 10
    busy = start(alice_client, story)
    assert (busy.status_code, busy.json()["error"]["code"]) == (409, "busy")
    assert Generation.objects.count() == 1


def _recorded(story, output, choices, status="finished"):
    return Generation.objects.create(
        story=story, user=story.owner, seed=1, status=status, output=output, choices=choices
    )


@pytest.mark.django_db
def test_the_listing_is_newest_first_and_can_keep_only_those_with_choices(alice_client, story):
    choice = [{"id": 5, "text": " cat", "top": [[5, " cat", 0.6], [6, " dog", 0.4]]}]
    old = _recorded(story, " cat", choice)
    plain = _recorded(story, " dog", [])
    new = _recorded(story, " cat", choice)
    _recorded(story, " ca", choice, status="running")
    url = f"/api/stories/{story.id}/generations/"

    every = alice_client.get(url).json()["generations"]
    assert len(every) == 4 and every[1]["generation_id"] == new.id and every[2]["generation_id"] == plain.id
    with_choices = alice_client.get(url, {"choices": "1"}).json()["generations"]
    assert [g["generation_id"] for g in with_choices] == [new.id, old.id]
    assert with_choices[0]["choices"] == choice and with_choices[0]["text"] == " cat"
    newest = alice_client.get(url, {"choices": "1", "limit": "1"}).json()["generations"]
    assert [g["generation_id"] for g in newest] == [new.id]


@pytest.mark.django_db
@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"choices": "yes"}])
def test_a_listing_with_a_wrong_query_gets_400_naming_it(alice_client, story, query):
    answer = alice_client.get(f"/api/stories/{story.id}/generations/", query)
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == next(iter(query))
