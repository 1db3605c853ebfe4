import io

import pytest
from django.core.management import CommandError, call_command

from engine.config import SamplingParams
from generation import selectors
from generation.worker.engines import engines
from tests.engine.helpers import run

pytestmark = pytest.mark.django_db


def test_it_streams_the_engines_continuation_to_stdout():
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "generate",
        "Once upon a time",
        "--max-new-tokens",
        "20",
        "--seed",
        "1",
        "--temperature",
        "0.7",
        stdout=out,
        stderr=err,
    )
    engine = engines.acquire(selectors.model_spec(selectors.model_config_active()))
    params = SamplingParams(max_new_tokens=20, temperature=0.7, top_p=0.95, top_k=50, repetition_penalty=1.1, seed=1)
    expected = run(engine, "Once upon a time", params)[2]
    assert out.getvalue() == expected.text + "\n"
    assert "seed 1" in err.getvalue() and f"{expected.new_tokens} tokens" in err.getvalue()


def test_a_wrong_parameter_is_a_clear_error():
    with pytest.raises(CommandError, match="temperature"):
        call_command("generate", "Once", "--temperature", "-1", stdout=io.StringIO())


def test_a_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="not a model folder"):
        call_command("generate", "Once", "--model", str(tmp_path), stdout=io.StringIO())
