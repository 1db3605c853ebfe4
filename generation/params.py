"""Sampling parameters from writers: checked strictly, never silently clamped or ignored.

A message's `params` fall back to the story's settings, then the admin's defaults.
"""

import secrets

from engine.config import SamplingParams

MAX_NEW_TOKENS = 1024
MAX_TOP_K = 1000
MIN_PENALTY, MAX_PENALTY = 0.5, 2.0
MAX_SEED = 2**63 - 1
MAX_STOPS, MAX_STOP_CHARS = 8, 100


class ParamError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _number(name, value, *, integer, low, high, low_open=False):
    # bool is an int in Python; a JSON true is not a number of tokens.
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ParamError(name, f"{name} must be {'an integer' if integer else 'a number'}.")
    if value < low or value > high or (low_open and value == low):
        bound = f"above {low}" if low_open else f"at least {low}"
        raise ParamError(name, f"{name} must be {bound} and at most {high}; got {value}.")
    return value


def _stop(value):
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ParamError("stop", "stop must be a list of strings.")
    if len(value) > MAX_STOPS:
        raise ParamError("stop", f"stop takes at most {MAX_STOPS} strings.")
    if any(not s or len(s) > MAX_STOP_CHARS for s in value):
        raise ParamError("stop", f"Each stop string must have 1 to {MAX_STOP_CHARS} characters.")
    return value


def _flag(name, value):
    if not isinstance(value, bool):
        raise ParamError(name, f"{name} must be true or false.")
    return value


# How many candidates a token keeps when a story records its choices.
RECORDED_CHOICES = 5

_CHECKS = {
    "max_new_tokens": lambda v: _number("max_new_tokens", v, integer=True, low=1, high=MAX_NEW_TOKENS),
    "temperature": lambda v: _number("temperature", v, integer=False, low=0, high=5),
    "top_p": lambda v: _number("top_p", v, integer=False, low=0, high=1, low_open=True),
    "top_k": lambda v: _number("top_k", v, integer=True, low=0, high=MAX_TOP_K),
    "repetition_penalty": lambda v: _number("repetition_penalty", v, integer=False, low=MIN_PENALTY, high=MAX_PENALTY),
    "seed": lambda v: None if v is None else _number("seed", v, integer=True, low=0, high=MAX_SEED),
    "stop": _stop,
    "record_choices": lambda v: _flag("record_choices", v),
    # The token the continuation starts with, chosen among a word's recorded candidates.
    "first_token": lambda v: None if v is None else _number("first_token", v, integer=True, low=0, high=2**31),
}
FIELDS = tuple(_CHECKS)


def clean_params(raw) -> dict:
    """The given parameters, checked; ParamError names the first wrong one."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ParamError("params", "params must be an object.")
    for key in raw:
        if key not in _CHECKS:
            raise ParamError(key, f"Unknown parameter '{key}'; known: {', '.join(FIELDS)}.")
    return {key: _CHECKS[key](value) for key, value in raw.items()}


def resolve_params(*, defaults: dict, story_settings: dict, requested: dict | None, ranges: dict | None = None) -> dict:
    """Admin defaults, overridden by the story's settings, then by the request; a seed is
    drawn when none is given, so that every generation can be reproduced. `ranges`
    ({name: (lowest, highest)}) narrows what the active configuration lets writers choose."""
    merged = {"stop": [], "seed": None, **defaults}
    # A chosen first token belongs to one request, never to the story.
    merged.update(clean_params({k: v for k, v in story_settings.items() if k in _CHECKS and k != "first_token"}))
    merged.update(clean_params(requested))
    for name, (low, high) in (ranges or {}).items():
        if not low <= merged[name] <= high:
            raise ParamError(name, f"On this site {name} is from {low} to {high}; got {merged[name]}.")
    if merged["seed"] is None:
        merged["seed"] = secrets.randbelow(2**31)
    return merged


def to_sampling(params: dict) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=params["max_new_tokens"],
        temperature=float(params["temperature"]),
        top_k=params["top_k"],
        top_p=float(params["top_p"]),
        repetition_penalty=float(params["repetition_penalty"]),
        seed=params["seed"],
        stop=tuple(params.get("stop") or ()),
        record_choices=RECORDED_CHOICES if params.get("record_choices") else 0,
        first_token=params.get("first_token"),
    )
