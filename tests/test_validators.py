"""The one vocabulary for checking clients' JSON (storyteller/validators.py): each check
answers the value it was given, or Invalid naming the field."""

import json

import pytest

from storyteller.validators import (
    Invalid,
    check_bool,
    check_dict,
    check_int,
    check_list,
    check_number,
    check_string,
    is_int,
)

pytestmark = pytest.mark.nodb


def refusal(check, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(Invalid) as refused:
        check(*args, **kwargs)
    return refused.value.field, refused.value.message


def test_a_bool_is_not_an_integer_nor_a_number():
    assert not is_int(True) and is_int(0)
    assert refusal(check_int, "seed", True) == ("seed", "seed must be an integer.")
    assert refusal(check_number, "temperature", False) == ("temperature", "temperature must be a number.")


def test_an_integer_is_checked_against_its_bounds():
    assert check_int("top_k", 0, low=0, high=1000) == 0
    assert check_int("top_k", 1000, low=0, high=1000) == 1000
    assert refusal(check_int, "top_k", 1001, low=0, high=1000) == (
        "top_k",
        "top_k must be at least 0 and at most 1000; got 1001.",
    )
    assert refusal(check_int, "after_seq", -2, low=-1) == ("after_seq", "after_seq must be at least -1; got -2.")
    assert refusal(check_int, "n", 1.0) == ("n", "n must be an integer.")
    assert refusal(check_int, "n", "1") == ("n", "n must be an integer.")


def test_a_number_may_leave_its_lowest_bound_out():
    assert check_number("top_p", 1, low=0, high=1, low_open=True) == 1
    assert check_number("top_p", 0.5, low=0, high=1, low_open=True) == 0.5
    assert refusal(check_number, "top_p", 0, low=0, high=1, low_open=True) == (
        "top_p",
        "top_p must be above 0 and at most 1; got 0.",
    )


def test_nan_and_infinity_from_json_are_not_numbers():
    for text in ("NaN", "Infinity", "-Infinity"):
        assert refusal(check_number, "temperature", json.loads(text)) == (
            "temperature",
            "temperature must be a number.",
        )


def test_a_string_is_checked_for_its_length():
    assert check_string("title", "") == ""
    assert check_string("request_id", "r" * 100, max_length=100) == "r" * 100
    assert refusal(check_string, "request_id", "r" * 101, max_length=100) == (
        "request_id",
        "request_id must be a string of at most 100 characters.",
    )
    assert refusal(check_string, "text", None) == ("text", "text must be a string.")


def test_a_string_of_spaces_is_empty_where_blanks_are_refused():
    assert check_string("word", " ", min_length=1) == " "
    assert refusal(check_string, "word", "  ", min_length=1, max_length=100, blank=False) == (
        "word",
        "word must be a string of 1 to 100 characters.",
    )


def test_a_list_is_checked_for_its_length_and_each_item_named_by_its_index():
    assert check_list("stop", [], max_length=8) == []
    assert refusal(check_list, "stop", "\n") == ("stop", "stop must be a list.")
    assert refusal(check_list, "words", ["one"], min_length=2, max_length=20, unit="words") == (
        "words",
        "words must be a list of 2 to 20 words.",
    )
    assert refusal(check_list, "stop", ["a"] * 9, max_length=8) == ("stop", "stop must be a list of at most 8 items.")
    assert refusal(check_list, "stop", ["a", 1], item=check_string) == ("stop[1]", "stop[1] must be a string.")


def test_bools_and_objects():
    assert check_bool("enabled", False) is False
    assert refusal(check_bool, "enabled", "yes") == ("enabled", "enabled must be true or false.")
    assert refusal(check_bool, "enabled", 1) == ("enabled", "enabled must be true or false.")
    assert check_dict("params", {}) == {}
    assert refusal(check_dict, "params", []) == ("params", "params must be an object.")
