import io
import json

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def test_it_prints_one_json_object_with_the_figures_for_each_level():
    out = io.StringIO()
    call_command(
        "bench_generation", "--json", "--concurrency", "1,3", "--new-tokens", "6", "--hf-stories", "1", stdout=out
    )
    report = json.loads(out.getvalue())
    assert set(report) >= {"model", "device", "dtype", "threads", "hf_generate", "engine", "worker_rss_mb"}
    # The CPU default: float32 arithmetic on float16 linear weights.
    assert report["device"] == "cpu" and report["dtype"] == "float32" and report["weights"] == "float16"
    assert report["hf_generate"]["tokens_per_s"] > 0
    assert set(report["engine"]) == {"1", "3"}
    for figures in report["engine"].values():
        assert figures["aggregate_tokens_per_s"] > 0
        assert figures["per_story_tokens_per_s_p50"] > 0
        assert figures["ttft_ms_p50"] > 0
    assert report["worker_rss_mb"] > report["model_weights_mb"] > 0
    assert set(report["vs_hf_generate"]) == {"1", "3"}
    assert report["vs_hf_generate"]["3"] == round(
        report["engine"]["3"]["aggregate_tokens_per_s"] / report["hf_generate"]["tokens_per_s"], 2
    )
    # The same weights in float16 predict the shipped passage as float32 does.
    quality = report["quality"]
    assert quality["perplexity"] == pytest.approx(quality["perplexity_float32"], rel=0.01)


def test_int8_weights_are_benchmarked_with_their_perplexity_beside_float32s():
    out = io.StringIO()
    call_command(
        "bench_generation", "--json", "--concurrency", "2", "--new-tokens", "4", "--hf-stories", "1",
        "--dtype", "int8", stdout=out,
    )  # fmt: skip
    report = json.loads(out.getvalue())
    assert report["weights"] == "int8" and report["dtype"] == "float32"
    quality = report["quality"]
    assert quality["perplexity"] != quality["perplexity_float32"]
    assert quality["perplexity"] == pytest.approx(quality["perplexity_float32"], rel=0.02)


def test_an_unknown_dtype_is_a_clear_error():
    with pytest.raises(CommandError, match="Unknown dtype 'int4'"):
        call_command("bench_generation", "--dtype", "int4", stdout=io.StringIO())


@pytest.mark.parametrize("levels", ["1,x", "0", ""])
def test_bad_concurrency_levels_are_a_clear_error(levels):
    with pytest.raises(CommandError, match="concurrency"):
        call_command("bench_generation", "--concurrency", levels, stdout=io.StringIO())
