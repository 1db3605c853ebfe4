import pytest

from generation.engine.scheduler import Scheduler


def test_it_admits_in_arrival_order_up_to_the_batch_size():
    scheduler = Scheduler(max_batch_size=2, max_tokens_in_flight=1000)
    for name in "abc":
        scheduler.add(name, 10)
    assert scheduler.admit() == ["a", "b"]
    assert scheduler.position("c") == 2
    assert scheduler.admit() == []


def test_it_admits_the_next_request_when_one_finishes():
    scheduler = Scheduler(max_batch_size=1, max_tokens_in_flight=1000)
    scheduler.add("a", 10)
    scheduler.add("b", 10)
    assert scheduler.admit() == ["a"]
    assert scheduler.position("b") == 1
    scheduler.finish("a")
    assert scheduler.admit() == ["b"]
    assert scheduler.position("b") == 0


def test_it_keeps_tokens_in_flight_within_the_limit():
    scheduler = Scheduler(max_batch_size=8, max_tokens_in_flight=100)
    scheduler.add("a", 60)
    scheduler.add("b", 50)
    assert scheduler.admit() == ["a"]
    assert scheduler.tokens_in_flight == 60
    scheduler.finish("a")
    assert scheduler.admit() == ["b"]


def test_a_request_larger_than_the_limit_still_runs_alone():
    scheduler = Scheduler(max_batch_size=8, max_tokens_in_flight=100)
    scheduler.add("huge", 500)
    assert scheduler.admit() == ["huge"]


def test_a_waiting_request_can_be_finished_before_it_runs():
    scheduler = Scheduler(max_batch_size=1, max_tokens_in_flight=100)
    scheduler.add("a", 10)
    scheduler.add("b", 10)
    scheduler.admit()
    scheduler.finish("b")
    assert scheduler.position("b") is None
    scheduler.finish("a")
    assert scheduler.idle


def test_it_refuses_a_duplicate_id_and_bad_limits():
    scheduler = Scheduler(max_batch_size=1, max_tokens_in_flight=10)
    scheduler.add("a", 1)
    with pytest.raises(ValueError):
        scheduler.add("a", 1)
    with pytest.raises(ValueError):
        Scheduler(max_batch_size=0, max_tokens_in_flight=10)
