import time

from engine.engine import RequestHandle
from engine.events import Delta, Finished


def _finished(text):
    return Finished(reason="length", text=text, prompt_tokens=1, new_tokens=3, ttft_ms=1.0, tokens_per_s=1.0)


def test_deltas_within_the_window_are_merged_into_one_message():
    handle = RequestHandle("r", coalesce_s=0.2)
    for piece in ("Once", " upon", " a"):
        handle._put(Delta(text=piece, tokens=1))
    events = handle.events()
    merged = next(events)
    assert merged == Delta(text="Once upon a", tokens=3)


def test_a_delta_is_sent_once_its_window_closes_even_if_nothing_follows():
    handle = RequestHandle("r", coalesce_s=0.05)
    handle._put(Delta(text="Hello", tokens=1))
    started = time.monotonic()
    assert next(handle.events()) == Delta(text="Hello", tokens=1)
    assert time.monotonic() - started < 1


def test_pending_text_goes_out_before_finished_and_then_the_stream_ends():
    handle = RequestHandle("r", coalesce_s=10)
    handle._put(Delta(text="a", tokens=1))
    handle._put(_finished("a"))
    assert list(handle.events()) == [Delta(text="a", tokens=1), _finished("a")]


def test_an_idle_stream_yields_ticks():
    handle = RequestHandle("r", coalesce_s=0.04)
    assert next(handle.events(idle_s=0.01)) is None
