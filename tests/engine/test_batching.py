"""Continuous batching: requests join and leave the running batch at every step, and a
request's tokens do not depend on what else is in the batch."""

import threading

from engine.config import SamplingParams
from engine.engine import Request
from engine.events import Delta, Finished
from tests.engine.helpers import run

PROMPTS = [
    "Once upon a time, there was a cat named Whiskers.",
    "The boats",
    "Every morning the cat walked along the shore and watched the boats come home with fish. One day a storm came.",
    "Mara found the cat on the pier",
]


def greedy(n):
    return SamplingParams(max_new_tokens=n, temperature=0, top_k=0, top_p=1.0, ignore_eos=True)


def run_together(engine, requests):
    """Submits every request before reading any, so they share the batch; returns the
    Finished event of each, in order."""
    handles = [engine.submit(request) for request in requests]
    return [next(e for e in handle.events() if isinstance(e, Finished)) for handle in handles]


def test_greedy_tokens_in_a_mixed_batch_equal_the_tokens_alone(engine):
    lengths = [30, 12, 25, 40]
    alone = [
        run(engine, p, greedy(n), request_id=f"alone{i}")[2]
        for i, (p, n) in enumerate(zip(PROMPTS, lengths, strict=True))
    ]
    together = run_together(
        engine, [Request(f"b{i}", p, greedy(n)) for i, (p, n) in enumerate(zip(PROMPTS, lengths, strict=True))]
    )
    for a, b in zip(alone, together, strict=True):
        assert b.token_ids == a.token_ids
        assert b.text == a.text
        assert b.new_tokens == len(b.token_ids)


def test_seeded_sampling_in_a_batch_equals_sampling_alone(engine):
    params = [
        SamplingParams(max_new_tokens=20, seed=s, temperature=0.9, top_k=40, top_p=0.9, repetition_penalty=1.2)
        for s in range(4)
    ]
    alone = [run(engine, PROMPTS[i], params[i], request_id=f"sa{i}")[2].token_ids for i in range(4)]
    together = run_together(engine, [Request(f"sb{i}", PROMPTS[i], params[i]) for i in range(4)])
    assert [f.token_ids for f in together] == alone


def test_requests_that_join_a_running_batch_write_the_same_as_alone(engine):
    lengths = [300, 20, 20, 20]
    expected = [
        run(engine, p, greedy(n), request_id=f"ja{i}")[2].token_ids
        for i, (p, n) in enumerate(zip(PROMPTS, lengths, strict=True))
    ]
    first = engine.submit(Request("j0", PROMPTS[0], greedy(lengths[0])))
    results = {}
    events = first.events()
    # Each later request joins after the batch has already taken some steps.
    joined = []
    for event in events:
        if isinstance(event, Delta) and len(joined) < 3:
            index = len(joined) + 1
            joined.append(engine.submit(Request(f"j{index}", PROMPTS[index], greedy(lengths[index]))))
        if isinstance(event, Finished):
            results[0] = event.token_ids
    for index, handle in enumerate(joined, start=1):
        results[index] = next(e for e in handle.events() if isinstance(e, Finished)).token_ids
    assert [results[i] for i in range(4)] == expected


def test_a_short_request_does_not_wait_for_a_long_one_to_finish(engine):
    order = []
    lock = threading.Lock()

    def follow(handle, name):
        for event in handle.events():
            if isinstance(event, Finished):
                with lock:
                    order.append(name)

    long = engine.submit(Request("long", PROMPTS[0], greedy(300)))
    events = long.events()
    next(e for e in events if isinstance(e, Delta))  # the long one is running
    short = engine.submit(Request("short", PROMPTS[1], greedy(5)))
    threads = [threading.Thread(target=follow, args=(short, "short"))]
    threads[0].start()
    threads[0].join(timeout=60)
    engine.cancel("long")
    for event in events:
        if isinstance(event, Finished):
            order.append(("long", event.reason))
    assert order == ["short", ("long", "cancelled")]
