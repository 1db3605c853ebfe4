"""A model's source, checked once for the admin and the loader: what kind it is, and a
clear refusal when it names a file or folder that cannot be loaded."""

import re

import pytest

from engine.errors import ModelLoadError
from engine.sources import adapter_checked, source_checked


def test_it_tells_the_kinds_of_source_apart(tmp_path):
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
