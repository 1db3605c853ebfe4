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
    assert report["device"] == "cpu" and report["dtype"] == "float32"
    assert report["hf_generate"]["tokens_per_s"] > 0
    assert set(report["engine"]) == {"1", "3"}
    for figures in report["engine"].values():
        assert figures["aggregate_tokens_per_s"] > 0
        assert figures["per_story_tokens_per_s_p50"] > 0
        assert figures["ttft_ms_p50"] > 0
    assert report["worker_rss_mb"] > 0


@pytest.mark.parametrize("levels", ["1,x", "0", ""])
def test_bad_concurrency_levels_are_a_clear_error(levels):
    with pytest.raises(CommandError, match="concurrency"):
        call_command("bench_generation", "--concurrency", levels, stdout=io.StringIO())
