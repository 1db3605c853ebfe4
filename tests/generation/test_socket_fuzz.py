"""Random message shapes thrown at the story socket: every one gets a well-formed answer,
and the socket keeps answering."""

import json

import pytest
from asgiref.sync import async_to_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generation import params
from tests.generation.conftest import socket_for

pytestmark = pytest.mark.django_db(transaction=True)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
param_names = st.sampled_from([*params.FIELDS, "warmth", ""])
shaped = st.fixed_dictionaries(
    {"type": st.sampled_from(["generate", "cancel", "resume", "dance", "", "GENERATE"]) | json_values},
    optional={
        "text": st.text(max_size=60) | json_values,
        "request_id": st.text(max_size=120) | json_values,
        "params": st.dictionaries(param_names, json_values, max_size=4) | json_values,
        "generation_id": st.integers(-2, 3) | json_values,
        "after_seq": st.integers(-3, 3) | json_values,
    },
)
frames = st.one_of(
    shaped.map(json.dumps),
    json_values.map(json.dumps),
    st.text(min_size=1, max_size=40),
    st.binary(min_size=1, max_size=20),
)
# A message that always gets exactly one answer: the marker that this frame's answers are in.
PROBE = {"type": "resume", "generation_id": -7}
KINDS = {"error": {"code", "message"}, "queued": {"generation_id", "position"}, "token": {"seq", "text"}}
KINDS |= {"done": {"generation_id", "finish_reason", "text", "stats"}}
CODES = {"invalid", "too_large", "not_found", "busy", "limit", "unavailable", "internal"}


def _well_formed(message) -> bool:
    if not isinstance(message, dict) or message.get("type") not in KINDS:
        return False
    if not KINDS[message["type"]] <= message.keys():
        return False
    return message["type"] != "error" or (message["code"] in CODES and isinstance(message["message"], str))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(frames, min_size=1, max_size=6))
def test_every_message_gets_a_well_formed_answer_and_nothing_crashes(alice, story, batch):
    async def throw():
        socket = await socket_for(alice, story.id)
        assert (await socket.connect())[0]
        for frame in batch:
            if isinstance(frame, bytes):
                await socket.send_to(bytes_data=frame)
            else:
                await socket.send_to(text_data=frame)
            await socket.send_json_to(PROBE)
            answers = []
            while True:
                message = await socket.receive_json_from(timeout=10)
                if message.get("code") == "not_found" and "-7" in message.get("message", ""):
                    break
                answers.append(message)
            assert all(_well_formed(m) for m in answers), (frame, answers)
            parsed = _parse(frame)
            if not isinstance(parsed, dict) or parsed.get("type") not in ("generate", "cancel", "resume", "inspect"):
                # Not a message the protocol knows: exactly one error says so.
                assert [m["type"] for m in answers] == ["error"], (frame, answers)
                assert answers[0]["code"] == "invalid"
        await socket.disconnect()

    async_to_sync(throw)()


def _parse(frame):
    if isinstance(frame, bytes):
        return None
    try:
        return json.loads(frame)
    except ValueError:
        return None
