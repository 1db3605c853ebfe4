import pytest

from generation.params import SAMPLER_DEFAULTS, ParamError, clean_params, resolve_params, to_sampling

DEFAULTS = {"max_new_tokens": 60, "temperature": 0.8, "top_p": 0.95, "top_k": 50, "repetition_penalty": 1.1}


def test_the_request_overrides_the_story_which_overrides_the_admin():
    params = resolve_params(
        defaults=DEFAULTS, story_settings={"temperature": 0.5, "top_k": 10}, requested={"top_k": 5, "seed": 3}
    )
    assert params == {**DEFAULTS, **SAMPLER_DEFAULTS, "temperature": 0.5, "top_k": 5, "seed": 3, "stop": []}
    # The samplers that are off unless asked for.
    assert SAMPLER_DEFAULTS["min_p"] == SAMPLER_DEFAULTS["dry_multiplier"] == SAMPLER_DEFAULTS["xtc_probability"] == 0


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
        ({"min_p": -0.01}, "min_p"),
        ({"min_p": 1.5}, "min_p"),
        ({"min_p": "low"}, "min_p"),
        ({"dry_multiplier": -1}, "dry_multiplier"),
        ({"dry_multiplier": 5.5}, "dry_multiplier"),
        ({"dry_base": 0.9}, "dry_base"),
        ({"dry_base": 4.5}, "dry_base"),
        ({"dry_allowed_length": 0}, "dry_allowed_length"),
        ({"dry_allowed_length": 2.5}, "dry_allowed_length"),
        ({"dry_allowed_length": 21}, "dry_allowed_length"),
        ({"dry_sequence_breakers": "\n"}, "dry_sequence_breakers"),
        ({"dry_sequence_breakers": [""]}, "dry_sequence_breakers"),
        ({"dry_sequence_breakers": ["x" * 21]}, "dry_sequence_breakers"),
        ({"dry_sequence_breakers": ["a"] * 17}, "dry_sequence_breakers"),
        ({"xtc_threshold": 0.6}, "xtc_threshold"),
        ({"xtc_threshold": -0.1}, "xtc_threshold"),
        ({"xtc_probability": 1.1}, "xtc_probability"),
        ({"xtc_probability": True}, "xtc_probability"),
        ({"banned": "dragon"}, "banned"),
        ({"banned": ["a"] * 101}, "banned"),
        ({"banned": ["x" * 101]}, "banned"),
        ({"banned": [" "]}, "banned"),
        ({"bias": {"dragon": -10.5}}, "bias"),
        ({"bias": {"dragon": "down"}}, "bias"),
        ({"bias": {f"w{i}": 1 for i in range(101)}}, "bias"),
        ({"bias": {"y" * 101: 1}}, "bias"),
    ],
)
def test_it_refuses_wrong_values_naming_the_field(raw, field):
    with pytest.raises(ParamError) as error:
        clean_params(raw)
    assert error.value.field == field
    assert field in str(error.value)


def test_the_samplers_edge_values_are_accepted_and_reach_the_engine():
    raw = {
        "min_p": 1,
        "dry_multiplier": 5,
        "dry_base": 4,
        "dry_allowed_length": 20,
        "dry_sequence_breakers": ["\n", "..."],
        "xtc_threshold": 0.5,
        "xtc_probability": 1,
        "banned": ["x" * 100] * 100,
        "bias": {"dragon": -10, "sea": 10},
    }
    assert clean_params(raw) == raw
    params = to_sampling(resolve_params(defaults=DEFAULTS, story_settings={"min_p": 0.1}, requested=raw))
    assert (params.min_p, params.dry_multiplier, params.dry_base, params.dry_allowed_length) == (1, 5, 4, 20)
    assert params.dry_sequence_breakers == ("\n", "...")
    assert (params.xtc_threshold, params.xtc_probability) == (0.5, 1)
    assert params.banned == ("x" * 100,) * 100 and params.bias == (("dragon", -10.0), ("sea", 10.0))


def test_a_generation_saved_before_the_samplers_existed_still_maps_to_the_engine():
    saved = {**DEFAULTS, "seed": 4, "stop": []}
    params = to_sampling(saved)
    assert (params.min_p, params.dry_multiplier, params.xtc_probability) == (0, 0, 0)


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
