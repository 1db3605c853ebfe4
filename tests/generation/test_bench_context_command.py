import io
import json

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def test_it_prints_one_json_object_with_the_waits_for_each_size_and_the_stall():
    out = io.StringIO()
    call_command("bench_context", "--json", "--sizes", "40,80", "--new-tokens", "4", stdout=out)
    report = json.loads(out.getvalue())
    assert set(report) >= {"model", "dtype", "threads", "engine_config", "sizes", "stall"}
    assert report["dtype"] == "float32" and report["threads"] >= 1
    # The worker's engine, with a delta for every token.
    assert report["engine_config"]["coalesce_ms"] == 0
    assert set(report["sizes"]) == {"40", "80"}
    for size, figures in report["sizes"].items():
        assert int(size) - 8 <= figures["prompt_tokens"] <= int(size)
        assert figures["append_prompt_tokens"] > figures["prompt_tokens"]
        for name in ("cold_ttft_ms", "retry_ttft_ms", "append_ttft_ms"):
            assert figures[name] > 0
    stall = report["stall"]
    assert stall["long_prompt_tokens"] == report["sizes"]["80"]["prompt_tokens"]
    assert stall["largest_gap_ms"] > 0
    assert stall["long_ttft_ms_while_streaming"] > 0
    assert stall["long_ttft_ms_alone"] == report["sizes"]["80"]["cold_ttft_ms"]
    assert stall["stream_ran_throughout"] is True


def test_a_size_beyond_the_context_window_is_skipped_with_the_reason():
    out = io.StringIO()
    call_command("bench_context", "--sizes", "40,5000", "--new-tokens", "4", stdout=out)
    table = out.getvalue()
    assert "5000  skipped: 5000 prompt tokens" in table
    assert "do not fit the prompt budget of 508 tokens (context window 512, 4 new tokens)" in table
    # The stall is measured with the longest size that fits.
    assert "stall: a prompt of " in table and " tokens arrives while another story streams" in table


def test_a_smaller_window_skips_a_size_that_fits_the_models_own():
    out = io.StringIO()
    call_command("bench_context", "--sizes", "40,300", "--new-tokens", "4", "--context-window", "256", stdout=out)
    assert "300  skipped: 300 prompt tokens" in out.getvalue()
    assert "(context window 256, 4 new tokens)" in out.getvalue()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--sizes", "abc"], "--sizes takes token counts separated by commas"),
        (["--sizes", "350,0"], "--sizes must all be 1 token or more"),
        (["--sizes", ","], "--sizes needs at least one prompt size"),
        (["--sizes", "40,40"], "--sizes lists a size twice"),
        (["--new-tokens", "0"], "--new-tokens must be at least 1"),
        (["--context-window", "1"], "--context-window must be at least 2 tokens"),
    ],
)
def test_bad_options_are_a_clear_error(options, message):
    with pytest.raises(CommandError, match=message):
        call_command("bench_context", *options, stdout=io.StringIO())
