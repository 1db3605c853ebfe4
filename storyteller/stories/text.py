"""Measures of a story's text that more than one layer needs."""


def word_count(text: str) -> int:
    return len(text.split())


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units: the editor's JavaScript string indices."""
    return len(text.encode("utf-16-le")) // 2
