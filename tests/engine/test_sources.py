"""A model's source, checked once for the admin and the loader: what kind it is, and a
clear refusal when it names a file or folder that cannot be loaded."""

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading

import pytest
from huggingface_hub import constants

from engine.errors import ModelLoadError
from engine.sources import adapter_checked, source_checked


def hub_cache_with(cache, repo_id: str, model_dir) -> None:
    """A Hugging Face cache folder (huggingface_hub's layout) holding `model_dir` as the
    hub model `repo_id`, as `huggingface-cli download` would leave it."""
    revision = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(model_dir, repo / "snapshots" / revision)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_it_tells_the_kinds_of_source_apart(tmp_path, hub_cache, tiny_model_dir):
    hub_cache_with(hub_cache, "HuggingFaceTB/SmolLM2-135M", tiny_model_dir)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"")
    assert source_checked(" packaged ") == ("packaged", None)
    assert source_checked(str(gguf)) == ("gguf", gguf)
    assert source_checked(str(tmp_path)) == ("folder", tmp_path)
    assert source_checked("HuggingFaceTB/SmolLM2-135M") == ("hub", None)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (None, "There is no folder at"),
        ({}, "is not a model folder: it has no config.json."),
        ({"config.json": "{}"}, "holds no weights (*.safetensors or *.bin)."),
    ],
)
def test_a_folder_that_is_not_a_model_is_refused_saying_why(tmp_path, files, message):
    folder = tmp_path / "model"
    if files is not None:
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        source_checked(str(folder))


def test_a_missing_gguf_file_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="There is no GGUF file at"):
        source_checked(str(tmp_path / "missing.gguf"))


def test_an_adapter_folder_needs_its_config(tmp_path):
    assert adapter_checked("  ") is None
    with pytest.raises(ModelLoadError, match="is not an adapter folder: it has no adapter_config.json"):
        adapter_checked(str(tmp_path))
    (tmp_path / "adapter_config.json").write_text("{}")
    assert adapter_checked(str(tmp_path)) == tmp_path


def test_a_hub_id_not_in_the_local_cache_is_refused_not_downloaded(hub_cache):
    with pytest.raises(ModelLoadError) as refused:
        source_checked("HuggingFaceTB/SmolLM2-360M")
    assert str(refused.value) == (
        f"HuggingFaceTB/SmolLM2-360M is not in this machine's Hugging Face cache ({hub_cache}), and models are "
        "never downloaded while the site runs. Download it once on every worker (huggingface-cli download "
        "HuggingFaceTB/SmolLM2-360M), or name a model folder."
    )


def test_a_source_that_is_no_kind_of_model_is_refused(hub_cache):
    with pytest.raises(ModelLoadError, match="'my model!' is not a model: name a folder"):
        source_checked("my model!")


LOAD = """
import sys
from engine.config import ModelSpec
from engine.errors import ModelLoadError
from engine.loader import load
try:
    print("loaded", load(ModelSpec(source=sys.argv[1], dtype="float32")).name)
except ModelLoadError as exc:
    print("refused", exc)
"""


class _Hub(http.server.BaseHTTPRequestHandler):
    """A stand-in for the hub that only counts what is asked of it."""

    asked: list[str] = []

    def do_HEAD(self):  # noqa: N802 (http.server's name)
        self.asked.append(f"{self.command} {self.path}")
        self.send_error(404)

    do_GET = do_HEAD  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def hub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hub.asked = []
    yield f"http://127.0.0.1:{server.server_address[1]}", _Hub.asked
    server.shutdown()


@pytest.mark.parametrize(
    ("source", "answer"),
    [("storyteller/tiny", "loaded storyteller/tiny"), ("storyteller/other", "refused storyteller/other is not in")],
)
def test_the_loader_reads_a_hub_id_from_the_local_cache_and_never_asks_the_hub(
    tmp_path, tiny_model_dir, hub, source, answer
):
    cache = tmp_path / "hub-cache"
    hub_cache_with(cache, "storyteller/tiny", tiny_model_dir)
    address, asked = hub
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_ENDPOINT": address}
    env.pop("HF_HUB_OFFLINE", None)
    run = subprocess.run([sys.executable, "-c", LOAD, source], env=env, capture_output=True, text=True, timeout=120)
    assert run.stdout.startswith(answer), run.stdout + run.stderr
    assert asked == [], asked
