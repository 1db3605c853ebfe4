import dataclasses
import threading
from unittest import mock

import torch

from engine.config import CPU_CONTEXT_WINDOW, EngineConfig, SamplingParams
from engine.engine import Engine, Request
from engine.events import Delta, Finished
from engine.runner import Runner
from tests.engine.helpers import events_of, run

GREEDY = SamplingParams(max_new_tokens=24, temperature=0, top_k=0, top_p=1.0, repetition_penalty=1.0)
PROMPT = "Once upon a time, there was a cat named Whiskers."


def test_greedy_output_is_the_same_tokens_as_transformers_generate(engine):
    _, _, finished = run(engine, PROMPT, GREEDY)
    model, tokenizer = engine.loaded.model, engine.tokenizer
    ids = torch.tensor([tokenizer(PROMPT, add_special_tokens=False)["input_ids"]])
    expected = model.generate(ids, max_new_tokens=24, do_sample=False, attention_mask=torch.ones_like(ids))
    expected_ids = [t for t in expected[0, ids.shape[1] :].tolist() if t not in engine.loaded.eos_token_ids]
    assert list(finished.token_ids) == expected_ids
    assert finished.text == tokenizer.decode(expected_ids, skip_special_tokens=True)


def test_the_deltas_join_to_the_whole_output(engine):
    _, deltas, finished = run(engine, PROMPT, SamplingParams(max_new_tokens=40, seed=3))
    assert finished.new_tokens > 0
    assert "".join(deltas) == finished.text
    assert finished.prompt_tokens == len(engine.tokenizer(PROMPT, add_special_tokens=False)["input_ids"])


def test_the_same_seed_gives_the_same_text_and_another_seed_another(engine):
    params = SamplingParams(max_new_tokens=30, temperature=1.0, top_k=0, top_p=1.0, seed=11)
    first = run(engine, PROMPT, params)[2]
    second = run(engine, PROMPT, params)[2]
    other = run(engine, PROMPT, SamplingParams(max_new_tokens=30, temperature=1.0, top_k=0, top_p=1.0, seed=12))[2]
    assert first.token_ids == second.token_ids
    assert first.token_ids != other.token_ids


def test_it_stops_before_a_stop_sequence(engine):
    full = run(engine, PROMPT, GREEDY)[2].text
    stop = full[6:9]
    _, deltas, finished = run(engine, PROMPT, SamplingParams(**{**GREEDY.__dict__, "stop": (stop,)}))
    assert finished.reason == "stop"
    assert finished.text == full[: full.find(stop)]
    assert "".join(deltas) == finished.text


def test_a_prompt_longer_than_the_context_keeps_its_end_and_still_generates(engine):
    long_prompt = "The sea was calm that night. " * 200 + "And then Whiskers"
    started, _, finished = run(engine, long_prompt, SamplingParams(max_new_tokens=20, seed=1))
    assert started.truncated
    assert started.prompt_tokens == engine.context_window - 20
    assert finished.reason in ("length", "eos")
    assert finished.new_tokens > 0 or finished.reason == "eos"


def test_an_empty_prompt_still_generates(engine):
    _, _, finished = run(engine, "", SamplingParams(max_new_tokens=5, seed=2))
    assert finished.reason in ("length", "eos")
    assert finished.error is None


def test_cancel_stops_a_running_request_within_a_step(engine):
    handle = engine.submit(Request("c", PROMPT, SamplingParams(max_new_tokens=200, seed=5, ignore_eos=True)))
    finished = None
    for event in handle.events():
        if isinstance(event, Delta):
            engine.cancel("c")
        if isinstance(event, Finished):
            finished = event
    assert finished.reason == "cancelled"
    assert finished.new_tokens < 200


def test_cancel_of_a_waiting_request_finishes_it_without_running_it(engine):
    # A batch of one: the second request waits behind the first and is cancelled there.
    single = Engine(engine.loaded, EngineConfig(max_batch_size=1))
    first = single.submit(Request("long", PROMPT, SamplingParams(max_new_tokens=200, seed=5, ignore_eos=True)))
    second = single.submit(Request("queued", PROMPT, SamplingParams(max_new_tokens=20, seed=5)))
    single.cancel("queued")
    events = [e for e in second.events() if e is not None]
    single.cancel("long")
    list(first.events())
    single.shutdown()
    assert isinstance(events[-1], Finished)
    assert events[-1].reason == "cancelled"
    assert events[-1].new_tokens == 0


def test_cancel_of_a_waiting_request_ends_it_at_once_while_a_long_prompt_is_read(engine):
    # A long story's prompt holds the loop for a minute on the real model: the reading is
    # held open here, and a writer who stopped while waiting behind it is answered first.
    slow = Engine(engine.loaded, EngineConfig(max_batch_size=1))
    reading, release = threading.Event(), threading.Event()
    run_pass = Runner.run

    def held_pass(runner, tables, starts, tokens):
        reading.set()
        assert release.wait(timeout=30)
        return run_pass(runner, tables, starts, tokens)

    try:
        with mock.patch.object(Runner, "run", autospec=True, side_effect=held_pass):
            long = slow.submit(Request("long", PROMPT * 8, SamplingParams(max_new_tokens=5, seed=5, ignore_eos=True)))
            assert reading.wait(timeout=10)
            waiting = slow.submit(Request("waiting", PROMPT, SamplingParams(max_new_tokens=20, seed=5)))
            slow.cancel("waiting")

            ended = []
            for event in waiting.events(idle_s=5):
                if event is None:
                    break  # nothing for 5 s: it is still waiting behind the reading
                ended.append(event)
            release.set()
            long_finished = events_of(long)[2]
        after = events_of(
            slow.submit(Request("after", PROMPT, SamplingParams(max_new_tokens=4, seed=1, ignore_eos=True)))
        )
    finally:
        release.set()
        slow.shutdown()

    assert [type(e) for e in ended] == [Finished], "the cancelled request waited for the long prompt's reading"
    assert ended[0].reason == "cancelled" and ended[0].new_tokens == 0
    assert long_finished.reason == "length" and long_finished.new_tokens == 5
    assert after[2].new_tokens == 4


def test_requests_from_many_threads_all_finish_with_their_own_text(engine):
    params = [SamplingParams(max_new_tokens=15, seed=s) for s in range(4)]
    alone = [run(engine, PROMPT, p, request_id=f"alone{i}")[2].text for i, p in enumerate(params)]
    results = {}

    def worker(i):
        results[i] = run(engine, PROMPT, params[i], request_id=f"t{i}")[2].text

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [results[i] for i in range(4)] == alone


def test_a_duplicate_request_id_is_refused_and_the_engine_keeps_running(engine):
    first = engine.submit(Request("dup", PROMPT, SamplingParams(max_new_tokens=100, seed=1, ignore_eos=True)))
    second = engine.submit(Request("dup", PROMPT, SamplingParams(max_new_tokens=5, seed=1)))
    refused = [e for e in second.events() if isinstance(e, Finished)][0]
    assert refused.reason == "error" and "already running" in refused.error
    assert [e for e in first.events() if isinstance(e, Finished)][0].reason == "length"
    assert run(engine, PROMPT, SamplingParams(max_new_tokens=3, seed=1, ignore_eos=True))[2].new_tokens == 3


def test_given_token_ids_are_continued_as_they_are(engine):
    ids = engine.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    by_text = run(engine, PROMPT, GREEDY)[2]

    handle = engine.submit(Request("ids", "(named only)", GREEDY, prompt_ids=tuple(ids)))
    by_ids = next(event for event in handle.events() if isinstance(event, Finished))

    assert by_ids.prompt_tokens == len(ids)
    assert by_ids.token_ids == by_text.token_ids


def test_the_prompt_budget_leaves_room_for_the_output(engine):
    budget = engine.prompt_budget(20)
    long_ids = tuple(engine.tokenizer("The sea was calm. " * 300, add_special_tokens=False)["input_ids"])

    started, _, _ = run_ids(engine, long_ids[:budget])
    assert not started.truncated and started.prompt_tokens == budget
    started, _, _ = run_ids(engine, long_ids[: budget + 1])
    assert started.truncated and started.prompt_tokens == budget


def run_ids(engine, ids):
    return events_of(engine.submit(Request("b", "", SamplingParams(max_new_tokens=20, seed=1), prompt_ids=ids)))


def test_on_the_cpu_the_window_is_4096_unless_set_and_never_more_than_the_models(engine):
    # A model that reads 8,192 tokens: cold, that is about a minute on the CPU.
    long_reader = dataclasses.replace(engine.loaded, context_window=8192)
    windows = {}
    for setting in (None, 6000, 20000):
        built = Engine(long_reader, EngineConfig(context_window=setting))
        windows[setting] = built.context_window
        built.shutdown()
    assert windows == {None: CPU_CONTEXT_WINDOW, 6000: 6000, 20000: 8192}
    # A model with a smaller window keeps its own.
    assert engine.context_window == engine.loaded.context_window == 512
