"""Measures of a story's text that more than one layer needs."""


def word_count(text: str) -> int:
    return len(text.split())


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units: the editor's JavaScript string indices."""
    return len(text.encode("utf-16-le")) // 2


def utf16_slice(text: str, start: int, end: int | None = None) -> str:
    """text[start:end] counted in UTF-16 code units; ValueError where a bound falls inside a
    character (between the two halves of a surrogate pair) or past the end."""
    units = text.encode("utf-16-le")
    end = len(units) // 2 if end is None else end
    if not 0 <= start <= end <= len(units) // 2:
        raise ValueError(f"[{start}, {end}] is not inside the text of {len(units) // 2} units.")
    try:
        return units[2 * start : 2 * end].decode("utf-16-le")
    except UnicodeDecodeError:
        raise ValueError(f"[{start}, {end}] splits a character in two.") from None
