"""Uploaded training files: what a job may be given, checked on the web side before
anything is created. Plain Python: the torch half of the corpus is engine/training/corpus.py."""

from engine.errors import CorpusError

# Uploads larger than this are refused (a plain-text novel is about 1 MB).
MAX_FILE_BYTES = 20 * 1024 * 1024


def size_checked(name: str, size: int) -> None:
    """Raises CorpusError for a file over MAX_FILE_BYTES: called with the size an upload or
    a file on disk says it has, before its bytes are read into memory."""
    if size > MAX_FILE_BYTES:
        raise CorpusError(f"{name} is {size / 2**20:.1f} MiB; a file may hold at most {MAX_FILE_BYTES // 2**20} MiB.")


def read_text_file(name: str, data: bytes) -> str:
    """An uploaded file's text, or CorpusError saying what is wrong with it."""
    size_checked(name, len(data))
    if b"\x00" in data:
        raise CorpusError(f"{name} is not a plain-text file (it holds NUL bytes).")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{name} is not UTF-8 text (byte {data[exc.start]:#04x} at position {exc.start}); save it as UTF-8."
        ) from None
    if not text.strip():
        raise CorpusError(f"{name} is empty.")
    return text
