"""When a Lorebook entry fires, and why: its keys (whole words or phrases in any case, or
regular expressions written /like this/i), its secondary keys with their logic, and how
far back from the end of the story it looks. Plain Python: the web side checks entries
with it when they are saved, the worker decides with it what the model reads
(generation/context.py) and explains it to the Lorebook's Test box.

A regular expression runs with a time limit (`regex`'s timeout), and all of a prompt's
searches share a budget: a search that runs out of time counts as not matching (or, for a
NOT rule, as matching, so that an entry is never let in by a search that did not finish),
and the explanation says it timed out.
"""

import time
from dataclasses import dataclass

import regex

# Keys are looked for in this many characters at the end of the story, unless the entry
# says otherwise (its scan depth), between SCAN_MIN and SCAN_MAX.
SCAN_CHARS = 3000
SCAN_MIN = 100
SCAN_MAX = 100_000
# One regular expression's search may take this long on one story, and all the searches
# of one prompt this long together: a worker assembles prompts between decoding steps.
REGEX_TIMEOUT_S = 0.05
SEARCH_BUDGET_S = 0.5
KEY_MAX_CHARS = 200
LOGICS = {
    "and_any": "and any of",
    "and_all": "and all of",
    "not_any": "and none of",
    "not_all": "and not all of",
}
PRIORITY_MAX = 1000
# How much of the story around a match the explanation shows.
AROUND = 30

_FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "x": regex.VERBOSE}
# One key of a comma-separated list: a /regular expression/ with its flags (which may
# hold commas), or anything up to the next comma.
_ONE_KEY = regex.compile(r"\s*(/(?:\\.|[^/\\])+/[a-z]*|[^,]*)\s*(?:,|$)")


class KeyProblem(ValueError):
    """A key that cannot be used; the message names it."""


def split_keys(keys: str) -> list[str]:
    """The keys of a comma-separated list, stripped, empty ones left out."""
    found, at = [], 0
    while at < len(keys):
        match = _ONE_KEY.match(keys, at)
        if match.end() == at:
            break
        if match.group(1).strip():
            found.append(match.group(1).strip())
        at = match.end()
    return found


def is_pattern(key: str) -> bool:
    return len(key) > 2 and key.startswith("/") and regex.fullmatch(r"/.+/[a-z]*", key, flags=regex.DOTALL) is not None


def compile_key(key: str) -> regex.Pattern:
    """The pattern a key stands for; KeyProblem for a regular expression that does not compile."""
    if len(key) > KEY_MAX_CHARS:
        raise KeyProblem(f"The key “{key[:40]}…” is longer than {KEY_MAX_CHARS} characters.")
    if not is_pattern(key):
        # A whole word or phrase, in any case: "Rin" is not in "bring".
        return regex.compile(rf"(?<!\w){regex.escape(key)}(?!\w)", regex.IGNORECASE)
    body, flags = key[1:].rsplit("/", 1)
    unknown = set(flags) - set(_FLAGS)
    if unknown:
        raise KeyProblem(f"The key {key} has the flag “{sorted(unknown)[0]}”; flags are i, m, s and x.")
    combined = 0
    for flag in flags:
        combined |= _FLAGS[flag]
    try:
        return regex.compile(body, combined)
    except regex.error as exc:
        raise KeyProblem(f"The key {key} is not a regular expression: {exc}.") from None


@dataclass(frozen=True)
class Found:
    """Where a key matched: the key, the text it matched, how many characters before the
    end of the passage it starts, and the passage around it."""

    key: str
    text: str
    from_end: int
    around: str

    def as_dict(self) -> dict:
        return {"key": self.key, "text": self.text, "from_end": self.from_end, "around": self.around}


@dataclass(frozen=True)
class Search:
    """One key list searched in a passage: the first match of each key that matched, and the
    keys whose regular expression ran out of time."""

    found: tuple[Found, ...]
    timed_out: tuple[str, ...]


def search(keys: list[str], passage: str, deadline: float | None = None) -> Search:
    """The keys' first non-empty matches in the passage, each search given REGEX_TIMEOUT_S,
    or what is left before `deadline` (time.monotonic())."""
    found, timed_out = [], []
    for key in keys:
        allowed = REGEX_TIMEOUT_S if deadline is None else min(REGEX_TIMEOUT_S, deadline - time.monotonic())
        if allowed <= 0:
            timed_out.append(key)
            continue
        try:
            matches = compile_key(key).finditer(passage, timeout=allowed)
            match = next((m for m in matches if m.end() > m.start()), None)
        except KeyProblem:
            continue  # refused when saved; an entry from before the check just never fires on it
        except TimeoutError:
            timed_out.append(key)
            continue
        if match is None:
            continue
        start, end = match.span()
        around = passage[max(0, start - AROUND) : end + AROUND]
        found.append(Found(key, match.group(0), len(passage) - start, around))
    return Search(tuple(found), tuple(timed_out))


@dataclass(frozen=True)
class Verdict:
    """Whether an entry fires on a story, and why: what its keys and its secondary keys
    found in the scanned end of it. `reason` is one of fires, no_key, no_secondary (AND:
    the secondary keys asked for are missing) and blocked (NOT: they are there)."""

    fires: bool
    reason: str
    scanned: int
    keys: Search
    secondary: Search

    def as_dict(self) -> dict:
        return {
            "fires": self.fires,
            "reason": self.reason,
            "scanned_chars": self.scanned,
            "matches": [f.as_dict() for f in self.keys.found],
            "secondary_matches": [f.as_dict() for f in self.secondary.found],
            "timed_out": [*self.keys.timed_out, *self.secondary.timed_out],
        }


def judge(
    keys: list[str], secondary: list[str], logic: str, scan_chars: int | None, story: str, deadline: float | None = None
) -> Verdict:
    """Looks for the keys in the last `scan_chars` (or SCAN_CHARS) of the story; with
    secondary keys, the entry also needs any or all of them (and_any, and_all), or none or
    not all of them (not_any, not_all), in the same characters. Searches stop at `deadline`."""
    scanned = story[-(scan_chars or SCAN_CHARS) :]
    primary = search(keys, scanned, deadline)
    others = search(secondary, scanned, deadline) if secondary and primary.found else Search((), ())
    if not primary.found:
        return Verdict(False, "no_key", len(scanned), primary, others)
    if secondary:
        count = len(others.found)
        if logic.startswith("not"):
            count += len(others.timed_out)
        passes = {
            "and_any": count > 0,
            "and_all": count == len(secondary),
            "not_any": count == 0,
            "not_all": count < len(secondary),
        }[logic]
        if not passes:
            return Verdict(
                False, "blocked" if logic.startswith("not") else "no_secondary", len(scanned), primary, others
            )
    return Verdict(True, "fires", len(scanned), primary, others)
