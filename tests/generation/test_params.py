import pytest

from generation.params import ParamError, clean_params, resolve_params, to_sampling

DEFAULTS = {"max_new_tokens": 60, "temperature": 0.8, "top_p": 0.95, "top_k": 50, "repetition_penalty": 1.1}


def test_the_request_overrides_the_story_which_overrides_the_admin():
    params = resolve_params(
        defaults=DEFAULTS, story_settings={"temperature": 0.5, "top_k": 10}, requested={"top_k": 5, "seed": 3}
    )
    assert params == {**DEFAULTS, "temperature": 0.5, "top_k": 5, "seed": 3, "stop": []}


def test_a_seed_is_drawn_and_recorded_when_none_is_given():
    params = resolve_params(defaults=DEFAULTS, story_settings={}, requested=None)
    assert isinstance(params["seed"], int) and params["seed"] >= 0
    assert to_sampling(params).seed == params["seed"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 1025}, "max_new_tokens"),
        ({"max_new_tokens": 1.5}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.01}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"repetition_penalty": 0.1}, "repetition_penalty"),
        ({"seed": -1}, "seed"),
        ({"seed": False}, "seed"),
        ({"stop": ["a"] * 9}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": [1]}, "stop"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_it_refuses_wrong_values_naming_the_field(raw, field):
    with pytest.raises(ParamError) as error:
        clean_params(raw)
    assert error.value.field == field
    assert field in str(error.value)


def test_edge_values_are_accepted_as_given():
    raw = {"max_new_tokens": 1024, "temperature": 0, "top_p": 1, "top_k": 0, "seed": None, "stop": ["\n\n"]}
    assert clean_params(raw) == raw


def test_the_configuration_narrows_what_writers_may_choose():
    defaults = DEFAULTS
    ranges = {"max_new_tokens": (1, 100), "temperature": (0.2, 1.0)}
    assert resolve_params(defaults=defaults, story_settings={}, requested={"temperature": 1.0}, ranges=ranges)
    with pytest.raises(ParamError, match=r"On this site temperature is from 0.2 to 1.0; got 1.5.") as refused:
        resolve_params(defaults=defaults, story_settings={"temperature": 1.5}, requested=None, ranges=ranges)
    assert refused.value.field == "temperature"
    with pytest.raises(ParamError, match="max_new_tokens is from 1 to 100; got 101"):
        resolve_params(defaults=defaults, story_settings={}, requested={"max_new_tokens": 101}, ranges=ranges)
