import pytest

from engine.scheduler import Scheduler


def scheduler(**limits):
    return Scheduler(**{"max_batch_size": 8, "max_tokens_in_flight": 10_000, "max_prefill_tokens": 1000, **limits})


def test_it_admits_in_arrival_order_up_to_the_batch_size():
    s = scheduler(max_batch_size=2)
    for name in "abc":
        s.add(name, prompt_tokens=5, new_tokens=5)
    assert s.admit() == ["a", "b"]
    assert list(s.running) == ["a", "b"] and list(s.waiting) == ["c"]
    assert s.admit() == []


def test_a_finished_request_makes_room_for_the_next_at_once():
    s = scheduler(max_batch_size=1)
    s.add("a", prompt_tokens=5, new_tokens=5)
    s.add("b", prompt_tokens=5, new_tokens=5)
    s.add("c", prompt_tokens=5, new_tokens=5)
    assert s.admit() == ["a"]
    assert list(s.waiting) == ["b", "c"]
    s.finish("a")
    assert s.admit() == ["b"]
    assert list(s.running) == ["b"] and list(s.waiting) == ["c"]


def test_the_kv_cache_is_counted_as_rows_times_the_longest_row():
    s = scheduler(max_tokens_in_flight=100)
    s.add("short", prompt_tokens=10, new_tokens=10)
    s.add("long", prompt_tokens=10, new_tokens=50)
    s.add("next", prompt_tokens=5, new_tokens=5)
    # short + long: 2 rows x 60 = 120 > 100, so long waits.
    assert s.admit() == ["short"]
    assert list(s.running) == ["short"] and list(s.waiting) == ["long", "next"]
    s.finish("short")
    assert s.admit() == ["long"]
    assert s.admit() == []  # next would make 2 x 60
    s.finish("long")
    assert s.admit() == ["next"]


def test_prompts_admitted_in_one_step_stay_within_the_prefill_budget():
    s = scheduler(max_prefill_tokens=100)
    for name in "abc":
        s.add(name, prompt_tokens=40, new_tokens=5)
    assert s.admit() == ["a", "b"]
    assert s.admit() == ["c"]


def test_a_request_larger_than_the_limits_still_runs_alone():
    s = scheduler(max_tokens_in_flight=100, max_prefill_tokens=10)
    s.add("huge", prompt_tokens=400, new_tokens=100)
    s.add("small", prompt_tokens=1, new_tokens=1)
    assert s.admit() == ["huge"]
    assert s.admit() == []


def test_a_waiting_request_can_be_finished_before_it_runs():
    s = scheduler(max_batch_size=1)
    s.add("a", prompt_tokens=1, new_tokens=1)
    s.add("b", prompt_tokens=1, new_tokens=1)
    s.admit()
    s.finish("b")
    assert "b" not in s.waiting and "b" not in s.running
    s.finish("a")
    assert s.idle


def test_it_refuses_a_duplicate_id_and_bad_limits():
    s = scheduler()
    s.add("a", prompt_tokens=1, new_tokens=1)
    with pytest.raises(ValueError):
        s.add("a", prompt_tokens=1, new_tokens=1)
    with pytest.raises(ValueError):
        Scheduler(max_batch_size=0, max_tokens_in_flight=10)
