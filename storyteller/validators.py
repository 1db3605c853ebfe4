"""One vocabulary for checking what clients send as JSON, shared by the socket, the HTTP
API, the sampling parameters and the story importer.

Each check takes the field's name and its value, returns the value when it is what the
field takes, and otherwise raises Invalid with a message that names the field. JSON has
one kind of number and Python's bool is an int, so a JSON `true` is never taken for 1;
nor is NaN (which Python's json reads) taken for a number. Plain Python, no Django.
"""

import math
from collections.abc import Callable


class Invalid(ValueError):
    """A value that is not what its field takes; `field` names it for the client."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def is_int(value) -> bool:
    """An integer, and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    if not is_int(value):
        raise Invalid(name, f"{name} must be an integer.")
    _check_range(name, value, low, high)
    return value


def check_number(
    name: str, value, *, low: float | None = None, high: float | None = None, low_open: bool = False
) -> int | float:
    """An integer or a finite float; `low_open` leaves `low` itself out."""
    if not (is_int(value) or (isinstance(value, float) and math.isfinite(value))):
        raise Invalid(name, f"{name} must be a number.")
    _check_range(name, value, low, high, low_open=low_open)
    return value


def _check_range(name, value, low, high, *, low_open=False) -> None:
    too_low = low is not None and (value < low or (low_open and value == low))
    if not too_low and (high is None or value <= high):
        return
    bounds = []
    if low is not None:
        bounds.append(f"above {low}" if low_open else f"at least {low}")
    if high is not None:
        bounds.append(f"at most {high}")
    raise Invalid(name, f"{name} must be {' and '.join(bounds)}; got {value}.")


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise Invalid(name, f"{name} must be true or false.")
    return value


def check_string(name: str, value, *, min_length: int = 0, max_length: int | None = None, blank: bool = True) -> str:
    """A string of `min_length` to `max_length` characters; with blank=False, one of only
    spaces counts as empty."""
    if not isinstance(value, str):
        raise Invalid(name, f"{name} must be a string.")
    length = len(value) if blank or value.strip() else 0
    if length < min_length or (max_length is not None and length > max_length):
        raise Invalid(name, f"{name} must be a string of {_between(min_length, max_length, 'characters')}.")
    return value


def check_list(
    name: str,
    value,
    *,
    min_length: int = 0,
    max_length: int | None = None,
    item: Callable[[str, object], object] | None = None,
    unit: str = "items",
) -> list:
    """A list of `min_length` to `max_length` items, each passing `item(f"{name}[i]", v)`;
    `unit` is what the message calls them ("words")."""
    if not isinstance(value, list):
        raise Invalid(name, f"{name} must be a list.")
    if len(value) < min_length or (max_length is not None and len(value) > max_length):
        raise Invalid(name, f"{name} must be a list of {_between(min_length, max_length, unit)}.")
    if item is not None:
        for index, element in enumerate(value):
            item(f"{name}[{index}]", element)
    return value


def check_dict(name: str, value) -> dict:
    if not isinstance(value, dict):
        raise Invalid(name, f"{name} must be an object.")
    return value


def _between(low: int, high: int | None, unit: str) -> str:
    if high is None:
        return f"at least {low:,} {unit}"
    if low == 0:
        return f"at most {high:,} {unit}"
    return f"{low:,} to {high:,} {unit}"
