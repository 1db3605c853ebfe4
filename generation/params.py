"""Sampling parameters from writers: checked strictly, never silently clamped or ignored.

A message's `params` fall back to the story's settings, then the admin's defaults.
"""

import secrets
from functools import partial

from engine.config import SamplingParams
from storyteller.validators import Invalid, check_bool, check_dict, check_int, check_list, check_number, check_string

MAX_NEW_TOKENS = 1024
MAX_TOP_K = 1000
MIN_PENALTY, MAX_PENALTY = 0.5, 2.0
MAX_SEED = 2**63 - 1
MAX_STOPS, MAX_STOP_CHARS = 8, 100
MAX_DRY_MULTIPLIER, MAX_DRY_BASE, MAX_DRY_ALLOWED_LENGTH = 5, 4, 20
MAX_DRY_BREAKERS, MAX_DRY_BREAKER_CHARS = 16, 20
# Above 0.5 at most one token can reach the threshold, and XTC would never act.
MAX_XTC_THRESHOLD = 0.5
MAX_BANNED, MAX_BANNED_CHARS = 100, 100
MAX_BIAS_WORDS, MAX_BIAS_WORD_CHARS, MAX_BIAS = 100, 100, 10


# A parameter that is not what it takes; `field` names it.
ParamError = Invalid


def _strings(most: int, longest: int, *, blank: bool = True):
    """A check of a list of at most `most` strings of 1 to `longest` characters (with
    blank=False, not only spaces)."""

    def check(name, value):
        def item(n, v):
            return check_string(n, v, min_length=1, max_length=longest, blank=blank)

        return check_list(name, value, max_length=most, item=item, unit="strings")

    return check


def _bias(name, value):
    """{"word": amount}: at most MAX_BIAS_WORDS words, each amount from -MAX_BIAS to MAX_BIAS."""
    check_dict(name, value)
    if len(value) > MAX_BIAS_WORDS:
        raise Invalid(name, f"{name} takes at most {MAX_BIAS_WORDS} words; got {len(value)}.")
    for word, amount in value.items():
        check_string(f"{name} word {word!r}", word, min_length=1, max_length=MAX_BIAS_WORD_CHARS, blank=False)
        check_number(f"{name}[{word!r}]", amount, low=-MAX_BIAS, high=MAX_BIAS)
    return value


def _optional(check):
    return lambda name, value: None if value is None else check(name, value)


# How many candidates a token keeps when a story records its choices.
RECORDED_CHOICES = 5

_CHECKS = {
    "max_new_tokens": partial(check_int, low=1, high=MAX_NEW_TOKENS),
    "temperature": partial(check_number, low=0, high=5),
    "top_p": partial(check_number, low=0, high=1, low_open=True),
    "top_k": partial(check_int, low=0, high=MAX_TOP_K),
    "repetition_penalty": partial(check_number, low=MIN_PENALTY, high=MAX_PENALTY),
    "min_p": partial(check_number, low=0, high=1),
    "dry_multiplier": partial(check_number, low=0, high=MAX_DRY_MULTIPLIER),
    # 1 makes the penalty the same for any run; above 1 it grows with the run.
    "dry_base": partial(check_number, low=1, high=MAX_DRY_BASE),
    "dry_allowed_length": partial(check_int, low=1, high=MAX_DRY_ALLOWED_LENGTH),
    "dry_sequence_breakers": _strings(MAX_DRY_BREAKERS, MAX_DRY_BREAKER_CHARS),
    "xtc_threshold": partial(check_number, low=0, high=MAX_XTC_THRESHOLD),
    "xtc_probability": partial(check_number, low=0, high=1),
    "banned": _strings(MAX_BANNED, MAX_BANNED_CHARS, blank=False),
    "bias": _bias,
    "seed": _optional(partial(check_int, low=0, high=MAX_SEED)),
    "stop": _strings(MAX_STOPS, MAX_STOP_CHARS),
    "record_choices": check_bool,
    # The token the continuation starts with, chosen among a word's recorded candidates.
    "first_token": _optional(partial(check_int, low=0, high=2**31)),
}
FIELDS = tuple(_CHECKS)

# The samplers that are off unless a story, preset or request turns them on (the admin's
# defaults cover the others): the engine's own defaults.
_OFF = SamplingParams()
SAMPLER_DEFAULTS = {
    "min_p": _OFF.min_p,
    "dry_multiplier": _OFF.dry_multiplier,
    "dry_base": _OFF.dry_base,
    "dry_allowed_length": _OFF.dry_allowed_length,
    "dry_sequence_breakers": list(_OFF.dry_sequence_breakers),
    "xtc_threshold": _OFF.xtc_threshold,
    "xtc_probability": _OFF.xtc_probability,
    "banned": [],
    "bias": {},
}


def clean_params(raw) -> dict:
    """The given parameters, checked; ParamError names the first wrong one."""
    if raw is None:
        return {}
    check_dict("params", raw)
    for key in raw:
        if key not in _CHECKS:
            raise ParamError(key, f"Unknown parameter '{key}'; known: {', '.join(FIELDS)}.")
    cleaned = {}
    for key, value in raw.items():
        try:
            cleaned[key] = _CHECKS[key](key, value)
        except Invalid as exc:
            # The field is the parameter, even when the message names one of its items.
            raise ParamError(key, exc.message) from None
    return cleaned


def resolve_params(*, defaults: dict, story_settings: dict, requested: dict | None, ranges: dict | None = None) -> dict:
    """Admin defaults, overridden by the story's settings, then by the request; a seed is
    drawn when none is given, so that every generation can be reproduced. `ranges`
    ({name: (lowest, highest)}) narrows what the active configuration lets writers choose."""
    merged = {"stop": [], "seed": None, **SAMPLER_DEFAULTS, **defaults}
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
    # A generation saved before a sampler existed ran without it.
    params = {**SAMPLER_DEFAULTS, **params}
    return SamplingParams(
        max_new_tokens=params["max_new_tokens"],
        temperature=float(params["temperature"]),
        top_k=params["top_k"],
        top_p=float(params["top_p"]),
        repetition_penalty=float(params["repetition_penalty"]),
        min_p=float(params["min_p"]),
        dry_multiplier=float(params["dry_multiplier"]),
        dry_base=float(params["dry_base"]),
        dry_allowed_length=params["dry_allowed_length"],
        dry_sequence_breakers=tuple(params["dry_sequence_breakers"]),
        xtc_threshold=float(params["xtc_threshold"]),
        xtc_probability=float(params["xtc_probability"]),
        banned=tuple(params["banned"]),
        bias=tuple((word, float(amount)) for word, amount in params["bias"].items()),
        seed=params["seed"],
        stop=tuple(params.get("stop") or ()),
        record_choices=RECORDED_CHOICES if params.get("record_choices") else 0,
        first_token=params.get("first_token"),
    )
