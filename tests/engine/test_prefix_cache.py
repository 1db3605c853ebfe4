"""Work already done is not done again: a prompt that starts like an earlier one reads only
what follows, and writes the same tokens as when it is read cold. And a long prompt is
read in pieces between the decode steps of the requests already streaming."""

import threading

from engine.config import EngineConfig, SamplingParams
from engine.engine import Engine, Request
from engine.events import Delta, Finished, Reading, Started
from tests.engine.helpers import events_of

# 420 token ids of the tiny model's vocabulary (over 100 ids), in a pattern that is not a loop.
STORY = tuple(3 + (i * 37 + i // 7) % 97 for i in range(420))


def greedy(n=12):
    return SamplingParams(max_new_tokens=n, temperature=0, top_k=0, top_p=1.0, ignore_eos=True)


def tokens(engine, request_id, ids, params=None):
    finished = events_of(engine.submit(Request(request_id, "", params or greedy(), prompt_ids=tuple(ids))))[2]
    assert finished.reason == "length", finished.error
    return finished.token_ids


def found(engine):
    return engine.cache_stats()["found_tokens"]


def test_prompts_that_share_a_prefix_write_what_they_write_cold(engine):
    cold = Engine(engine.loaded, EngineConfig(prefix_cache_tokens=0))
    warm = Engine(engine.loaded, EngineConfig(prefix_cache_tokens=4096))
    try:
        first = tokens(warm, "first", STORY)
        assert found(warm) == 0
        # A retry finds all of the prompt but its last (unfinished) block.
        assert tokens(warm, "retry", STORY) == first == tokens(cold, "cold", STORY)
        assert found(warm) == len(STORY) // 16 * 16
        # A sentence typed at the end; a prompt that diverges halfway; a shorter one.
        shapes = {
            "appended": STORY + (11, 12, 13, 14, 15, 16, 17, 18, 19, 20),
            "diverged": STORY[:200] + tuple(reversed(STORY[200:])),
            "shorter": STORY[:150],
        }
        for name, ids in shapes.items():
            before = found(warm)
            assert tokens(warm, name, ids) == tokens(cold, f"cold-{name}", ids), name
            assert found(warm) > before, f"{name} found nothing cached"
        # Generate right after a continuation: the prompt is the story and what was written.
        continued = STORY + first
        before = found(warm)
        assert tokens(warm, "continued", continued) == tokens(cold, "cold-continued", continued)
        assert found(warm) - before >= len(STORY) // 16 * 16
    finally:
        cold.shutdown()
        warm.shutdown()


def test_the_cached_count_is_what_a_request_then_finds_and_takes_nothing(engine):
    warm = Engine(engine.loaded, EngineConfig(prefix_cache_tokens=4096))
    try:
        assert warm.cached_tokens(list(STORY)) == 0
        first = tokens(warm, "first", STORY)
        continued = list(STORY + first)
        # Asking twice changes nothing: nothing is taken or counted as a lookup.
        ready = warm.cached_tokens(continued)
        assert ready == warm.cached_tokens(continued) and ready >= len(STORY) // 16 * 16
        assert warm.cache_stats()["held_tokens"] == 0
        before = found(warm)
        tokens(warm, "continued", continued)
        assert found(warm) - before == ready
        # A prompt that differs from the first token finds nothing.
        assert warm.cached_tokens([STORY[0] + 1, *STORY[1:]]) == 0
    finally:
        warm.shutdown()


def test_requests_sharing_a_prefix_at_once_and_after_eviction_write_what_they_write_cold(engine):
    cold = Engine(engine.loaded, EngineConfig(prefix_cache_tokens=0))
    # Room for one story's prefix: each new story pushes the last one out.
    small = Engine(engine.loaded, EngineConfig(prefix_cache_tokens=448))
    prompts = [STORY[:300] + (20 + n,) * (10 + n) for n in range(4)]
    try:
        expected = [tokens(cold, f"cold{n}", ids) for n, ids in enumerate(prompts)]
        tokens(small, "warm-up", STORY[:300])
        results, threads = {}, []
        for n, ids in enumerate(prompts):
            run = lambda n=n, ids=ids: results.__setitem__(n, tokens(small, f"at-once{n}", ids))  # noqa: E731
            threads.append(threading.Thread(target=run))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert [results[n] for n in range(4)] == expected
        assert found(small) >= 4 * 288, "the four did not find the story's shared beginning"
        # Other stories fill the budget and evict the shared prefix; it is read again, right.
        for n in range(3):
            tokens(small, f"other{n}", tuple(reversed(STORY))[n * 100 :])
        assert small.cache_stats()["cached_tokens"] <= small.cache_stats()["budget_tokens"] == 448
        before = found(small)
        assert tokens(small, "after-eviction", prompts[0]) == expected[0]
        assert found(small) == before, "the evicted prefix was still found"
    finally:
        cold.shutdown()
        small.shutdown()


def test_a_prompt_read_in_small_pieces_writes_what_one_piece_writes(engine):
    pieces = Engine(engine.loaded, EngineConfig(max_prefill_tokens=16, prefix_cache_tokens=0))
    whole = Engine(engine.loaded, EngineConfig(prefix_cache_tokens=0))
    try:
        seeded = SamplingParams(max_new_tokens=20, temperature=0.9, seed=3, ignore_eos=True)
        assert tokens(pieces, "p", STORY, seeded) == tokens(whole, "w", STORY, seeded)
        assert tokens(pieces, "g", STORY) == tokens(whole, "g", STORY)
    finally:
        pieces.shutdown()
        whole.shutdown()


def test_a_running_stream_gets_its_token_in_every_pass_that_reads_a_long_prompt(engine):
    slow = Engine(engine.loaded, EngineConfig(max_prefill_tokens=32, coalesce_ms=0))
    # The forward passes in the order the engine runs them, each as its rows' new tokens.
    passes, run = [], slow._runner.run

    def logged(tables, starts, pieces):
        passes.append([len(piece) for piece in pieces])
        return run(tables, starts, pieces)

    slow._runner.run = logged
    try:
        streaming = slow.submit(Request("a", "", greedy(400), prompt_ids=STORY[:20]))
        for event in streaming.events():
            if isinstance(event, Delta):
                break  # a is streaming
        long = slow.submit(Request("b", "", greedy(4), prompt_ids=STORY))
        started, readings = None, []
        for event in long.events():
            if isinstance(event, Started):
                started = event
            elif isinstance(event, Reading):
                readings.append(event)
            elif isinstance(event, Finished):
                finished = event
        slow.cancel("a")
        a_finished = events_of(streaming)[2]
    finally:
        slow.shutdown()

    assert started.prompt_tokens == len(STORY) and finished.new_tokens == 4
    assert a_finished.reason == "cancelled", "a was not streaming all along"
    reading = [rows for rows in passes[1:] if max(rows) > 1]  # the first read a's own prompt
    # b finds the block a read (both begin with STORY's first 16 tokens); the other 404 are
    # read in pieces of at most 32, in 13 passes or more, with a's token in each of them.
    assert len(reading) >= 13 and sum(max(rows) for rows in reading) == len(STORY) - 16
    assert all(sorted(rows) == [1, max(rows)] for rows in reading), reading
    # The writer is told how far the reading is, in order, up to the last piece.
    assert [r.done for r in readings] == sorted(r.done for r in readings)
    assert len(readings) >= 13 and readings[-1].done >= len(STORY) - 32
    assert all(r.total == len(STORY) for r in readings)


def test_stop_cuts_a_prompt_short_while_it_is_read(engine):
    slow = Engine(engine.loaded, EngineConfig(max_prefill_tokens=16))
    try:
        handle = slow.submit(Request("long", "", greedy(4), prompt_ids=STORY))
        for event in handle.events():
            if isinstance(event, Reading) and event.done >= 32:
                slow.cancel("long")
                break
        rest = list(handle.events())
        after = tokens(slow, "after", STORY[:40])
    finally:
        slow.shutdown()

    finished = rest[-1]
    assert isinstance(finished, Finished) and finished.reason == "cancelled" and finished.new_tokens == 0
    assert not any(isinstance(event, Delta) for event in rest)
    assert len(after) == 12
    assert slow.cache_stats()["held_tokens"] == 0


def test_a_pass_that_fails_ends_its_requests_holding_nothing_and_leaves_no_wrong_keys(engine):
    cold = Engine(engine.loaded, EngineConfig(prefix_cache_tokens=0))
    flaky = Engine(engine.loaded, EngineConfig(max_prefill_tokens=64, prefix_cache_tokens=4096))
    # The pass to fail: (kind, how many passes of that kind to let through first).
    armed = {}
    run = flaky._runner.run

    def failing(tables, starts, pieces):
        kind = "decode" if max(map(len, pieces)) == 1 else "read"
        if armed.get(kind) == 0:
            del armed[kind]
            raise RuntimeError(f"the model broke in a {kind} pass")
        if kind in armed:
            armed[kind] -= 1
        return run(tables, starts, pieces)

    flaky._runner.run = failing
    try:
        expected = tokens(cold, "cold", STORY)
        for kind in ("read", "decode"):
            armed[kind] = 2
            finished = events_of(flaky.submit(Request(kind, "", greedy(), prompt_ids=STORY)))[2]
            assert finished.reason == "error" and f"the model broke in a {kind} pass" in finished.error
            assert not armed, "the pass did not fail"
            assert flaky.cache_stats()["held_tokens"] == 0
            # What was kept of the failed request is right: the same prompt again writes
            # what it writes cold, and found some of it.
            before = found(flaky)
            assert tokens(flaky, f"after-{kind}", STORY) == expected
            assert found(flaky) > before
    finally:
        cold.shutdown()
        flaky.shutdown()
