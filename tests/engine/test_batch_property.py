"""Whatever else shares the batch, a request writes what it writes alone.

Requests of random lengths, up to the whole context window, join the running batch at
random moments and finish in random order; every greedy request's tokens must equal the
tokens of the same request run on its own. A long story next to short ones is what broke
the KV cache's growth once (a short request's row shrank the long one's positions).
"""

import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import SamplingParams
from engine.engine import Request
from engine.events import Finished, Started

CONTEXT = 512  # the tiny model's window (tests/harness/tinymodel.py)


def greedy(n):
    return SamplingParams(max_new_tokens=n, temperature=0, top_k=0, top_p=1.0, ignore_eos=True)


@st.composite
def requests(draw, vocabulary: int):
    """(prompt ids, new tokens, gate): gate None submits at once, gate j waits until the
    j-th request has started running."""
    count = draw(st.integers(min_value=2, max_value=6))
    drawn = []
    for index in range(count):
        prompt_len = draw(st.integers(min_value=1, max_value=CONTEXT - 2))
        new_tokens = draw(st.integers(min_value=1, max_value=min(48, CONTEXT - 1 - prompt_len)))
        token = st.integers(min_value=3, max_value=vocabulary - 1)
        prompt = draw(st.lists(token, min_size=prompt_len, max_size=prompt_len))
        gate = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=index - 1))) if index else None
        drawn.append((tuple(prompt), new_tokens, gate))
    return drawn


def _collect(handle, started: threading.Event, out: list):
    for event in handle.events():
        if isinstance(event, Started):
            started.set()
        elif isinstance(event, Finished):
            out.append(event)
    started.set()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_it_writes_the_same_tokens_in_any_batch_as_alone(engine, data):
    drawn = data.draw(requests(engine.loaded.model.config.vocab_size))
    alone = []
    for index, (prompt, new_tokens, _) in enumerate(drawn):
        handle = engine.submit(Request(f"alone-{index}", "", greedy(new_tokens), prompt_ids=prompt))
        alone.append(next(e for e in handle.events() if isinstance(e, Finished)))
    assert all(f.reason == "length" for f in alone), [f.error for f in alone]

    started = [threading.Event() for _ in drawn]
    finished: list[list[Finished]] = [[] for _ in drawn]
    threads = []
    for index, (prompt, new_tokens, gate) in enumerate(drawn):
        if gate is not None:
            assert started[gate].wait(timeout=60)
        handle = engine.submit(Request(f"mixed-{index}", "", greedy(new_tokens), prompt_ids=prompt))
        thread = threading.Thread(target=_collect, args=(handle, started[index], finished[index]))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(timeout=120)

    for index, (one, together) in enumerate(zip(alone, finished, strict=True)):
        (result,) = together
        assert result.reason == "length", f"request {index}: {result.error}"
        assert result.token_ids == one.token_ids, f"request {index} wrote other tokens in the batch"
