import pytest

from engine.scheduler import Scheduler


def scheduler(**limits):
    return Scheduler(**{"max_batch_size": 8, "max_tokens_in_flight": 10_000, **limits})


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


def test_the_kv_cache_is_counted_as_the_sum_of_the_lengths():
    s = scheduler(max_tokens_in_flight=100)
    s.add("long", prompt_tokens=10, new_tokens=50)
    s.add("short", prompt_tokens=10, new_tokens=10)
    s.add("next", prompt_tokens=15, new_tokens=5)
    # long + short: 60 + 20 = 80 fits (rows x the longest would be 120); + next is 100.
    assert s.admit() == ["long", "short", "next"]
    s.add("more", prompt_tokens=1, new_tokens=0)
    assert s.admit() == []
    assert s.tokens_in_flight == 100
    s.finish("short")
    assert s.admit() == ["more"]


def test_a_request_larger_than_the_limits_still_runs_alone():
    s = scheduler(max_tokens_in_flight=100)
    s.add("huge", prompt_tokens=400, new_tokens=100)
    s.add("small", prompt_tokens=1, new_tokens=1)
    assert s.admit() == ["huge"]
    assert s.admit() == []


def test_a_request_decodes_once_its_whole_prompt_is_read():
    s = scheduler()
    s.add("a", prompt_tokens=100, new_tokens=5)
    s.admit()
    assert s.decoding == []
    s.mark_read("a", 64)
    assert s.decoding == [] and s.running["a"].read == 64
    s.mark_read("a", 36)
    assert s.decoding == ["a"]
    assert s.reading_plan(1000) == []


def test_a_long_prompt_is_read_in_pieces_within_the_budget():
    s = scheduler()
    s.add("long", prompt_tokens=6000, new_tokens=16)
    s.admit()
    pieces = []
    while plan := s.reading_plan(512):
        assert len(plan) == 1 and plan[0][1] <= 512
        pieces.append(plan[0][1])
        s.mark_read(*plan[0])
    assert sum(pieces) == 6000 and len(pieces) == 12


def test_a_short_prompt_is_read_at_once_beside_a_long_one():
    s = scheduler()
    s.add("long", prompt_tokens=6000, new_tokens=16)
    s.admit()
    s.mark_read("long", 1000)
    s.add("short", prompt_tokens=100, new_tokens=16)
    s.add("shorter", prompt_tokens=40, new_tokens=16)
    s.admit()
    # The least left first; the long one takes what the budget leaves.
    assert s.reading_plan(512) == [("shorter", 40), ("short", 100), ("long", 372)]
    assert s.reading_plan(120) == [("shorter", 40), ("short", 80)]


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
