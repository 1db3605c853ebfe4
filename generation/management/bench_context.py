"""How long a writer waits for the first word of a long story, in one process.

For each size, three requests in a row: a story never seen before (cold), the same prompt
ids again as soon as it has finished (retry), and the story with one more sentence typed
at its end (append). Every prompt is made the way the worker makes it: the story's text
through generation/context.py's `assemble`. Then the stall: one story streams while a long
prompt arrives, and the longest wait between two of its tokens while that prompt is read.

Every request is greedy, ignores end-of-text and writes exactly `new_tokens` tokens. Only
Delta and Finished events are looked at: others the engine may send are passed over.
"""

import dataclasses
import statistics
import threading
import time

import torch

from engine.config import SamplingParams
from engine.engine import Engine, Request
from engine.events import Delta, Finished
from generation import context
from generation.management import prose

# The sentence the writer types at the end of the story (16 tokens with SmolLM2's tokenizer).
APPENDED = "She pulled the door shut behind her and listened to the rain on the roof."
# The story that streams during the stall: its prompt tokens and its most new tokens. It
# is cancelled as soon as the long prompt has been read.
STREAM_PROMPT_TOKENS = 100
STREAM_NEW_TOKENS = 400
# Tokens the stream writes before the long prompt arrives, so that it is in its stride.
STREAM_WARM_TOKENS = 8
# prose.py's story numbers: a story of its own for each, none sharing a beginning; the
# sizes take the numbers after these.
WARM_UP_STORY, STREAM_STORY, LONG_STORY, FIRST_SIZE_STORY = 0, 1, 2, 3
# The pause before each timed request. An engine woken from idle waits gather_ms for more
# requests before it reads a prompt, and one that has not yet gone idle does not: without
# the pause, a request sent the instant the last one finished would sometimes save that wait.
SETTLE_S = 0.1


class BenchError(Exception):
    """The engine failed a request, so there is no figure to give."""


def _params(new_tokens: int) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=new_tokens, temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0, ignore_eos=True
    )


def _request(request_id: str, ids: list[int], new_tokens: int) -> Request:
    return Request(f"bench-context-{request_id}", request_id, _params(new_tokens), prompt_ids=tuple(ids))


def _finished(handle) -> Finished:
    for event in handle.events():
        if isinstance(event, Finished):
            if event.reason not in ("length", "stop", "eos", "cancelled") or event.ttft_ms is None:
                raise BenchError(f"The engine ended request {handle.request_id} with {event.reason}: {event.error}")
            return event
    raise BenchError(f"Request {handle.request_id} ended without a Finished event.")


def _ttft_ms(engine: Engine, request_id: str, ids: list[int], new_tokens: int) -> float:
    time.sleep(SETTLE_S)
    return _finished(engine.submit(_request(request_id, ids, new_tokens))).ttft_ms


def _count_tokens(engine: Engine):
    return lambda text: len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])


def _prompt_ids(engine: Engine, text: str, budget: int) -> list[int]:
    """The ids the worker would submit for a story of this text, with no memory, note or lore."""
    return context.assemble(engine.tokenizer, text, context.StoryContext(), budget).ids


def measure_size(engine: Engine, *, story: int, size: int, new_tokens: int) -> dict:
    budget = engine.prompt_budget(new_tokens)
    appended = _count_tokens(engine)(" " + APPENDED)
    if size + appended > budget:
        return {
            "skipped": f"{size} prompt tokens and the {appended} of the appended sentence do not fit the prompt "
            f"budget of {budget} tokens (context window {engine.context_window}, {new_tokens} new tokens)."
        }
    text = prose.story_of_tokens(story, size, _count_tokens(engine))
    ids = _prompt_ids(engine, text, budget)
    cold = _ttft_ms(engine, f"{size}-cold", ids, new_tokens)
    retry = _ttft_ms(engine, f"{size}-retry", ids, new_tokens)
    append_ids = _prompt_ids(engine, f"{text} {APPENDED}", budget)
    append = _ttft_ms(engine, f"{size}-append", append_ids, new_tokens)
    return {
        "prompt_tokens": len(ids),
        "cold_ttft_ms": round(cold, 1),
        "retry_ttft_ms": round(retry, 1),
        "append_prompt_tokens": len(append_ids),
        "append_ttft_ms": round(append, 1),
    }


def measure_stall(engine: Engine, *, long_tokens: int, new_tokens: int) -> dict:
    """One story streams; once it is in its stride a long cold prompt arrives. The largest
    gap between two of the stream's tokens counts the gaps that overlap the time from the
    long prompt's submit to its first token."""
    stream_new = min(STREAM_NEW_TOKENS, engine.context_window // 2)
    stream_budget = engine.prompt_budget(stream_new)
    stream_text = prose.story_of_tokens(STREAM_STORY, min(STREAM_PROMPT_TOKENS, stream_budget), _count_tokens(engine))
    budget = engine.prompt_budget(new_tokens)
    long_ids = _prompt_ids(engine, prose.story_of_tokens(LONG_STORY, long_tokens, _count_tokens(engine)), budget)

    stream = engine.submit(_request("stall-stream", _prompt_ids(engine, stream_text, stream_budget), stream_new))
    token_times: list[float] = []
    ended: list[Finished] = []
    warm = threading.Event()

    def follow() -> None:
        for event in stream.events():
            if isinstance(event, Delta) and event.tokens:
                token_times.append(time.monotonic())
                if len(token_times) == STREAM_WARM_TOKENS:
                    warm.set()
            elif isinstance(event, Finished):
                ended.append(event)
                warm.set()
                return

    follower = threading.Thread(target=follow, name="bench-context-stream")
    follower.start()
    try:
        warm.wait()
        if ended:
            raise BenchError(f"The streaming story ended ({ended[0].reason}) before the long prompt was sent.")
        submitted = time.monotonic()
        long_ttft = _finished(engine.submit(_request("stall-long", long_ids, new_tokens))).ttft_ms
    finally:
        engine.cancel(stream.request_id)
        follower.join()
    if ended and ended[0].reason == "error":
        raise BenchError(f"The engine ended the streaming story with an error: {ended[0].error}")
    read_at = submitted + long_ttft / 1000
    pairs = list(zip(token_times, token_times[1:], strict=False))
    while_read = [later - earlier for earlier, later in pairs if later > submitted and earlier < read_at]
    before = [later - earlier for earlier, later in pairs if later <= submitted]
    return {
        "long_prompt_tokens": len(long_ids),
        "largest_gap_ms": round(max(while_read) * 1000, 1) if while_read else None,
        "long_ttft_ms_while_streaming": round(long_ttft, 1),
        "stream_gap_ms_p50_before": round(statistics.median(before) * 1000, 1) if before else None,
        # False when the stream stopped before the long prompt's first token (the engine
        # held the long prompt back, say): the largest gap then misses the end of the wait.
        "stream_ran_throughout": bool(token_times) and token_times[-1] > read_at,
    }


def run(engine: Engine, *, sizes: list[int], new_tokens: int) -> dict:
    # A short warm-up, so that first-call costs (allocations, kernels) are not measured.
    warm_up = prose.story_of_tokens(WARM_UP_STORY, min(64, engine.prompt_budget(4)), _count_tokens(engine))
    _ttft_ms(engine, "warm-up", _prompt_ids(engine, warm_up, engine.prompt_budget(4)), 4)
    report = {
        "model": engine.name,
        "device": engine.loaded.device.type,
        "dtype": str(engine.loaded.dtype).removeprefix("torch."),
        "weights": engine.loaded.weights,
        "threads": torch.get_num_threads(),
        "new_tokens": new_tokens,
        "context_window": engine.context_window,
        "prompt_budget": engine.prompt_budget(new_tokens),
        "engine_config": dataclasses.asdict(engine.config),
        "sizes": {},
    }
    for index, size in enumerate(sizes):
        report["sizes"][str(size)] = measure_size(
            engine, story=FIRST_SIZE_STORY + index, size=size, new_tokens=new_tokens
        )
    measured = [size for size in sizes if "skipped" not in report["sizes"][str(size)]]
    if measured:
        longest = max(measured)
        report["stall"] = measure_stall(engine, long_tokens=longest, new_tokens=new_tokens)
        report["stall"]["long_ttft_ms_alone"] = report["sizes"][str(longest)]["cold_ttft_ms"]
    else:
        report["stall"] = {"skipped": "No size fits the prompt budget."}
    return report


def table(report: dict) -> str:
    """The report for a person to read."""
    lines = [
        f"{report['model']} ({report['device']}, {report['dtype']}, {report['threads']} torch threads): "
        f"time to first token, {report['new_tokens']} new tokens, prompt budget {report['prompt_budget']}",
        "",
        f"{'size':>6} {'prompt':>7} {'cold ms':>9} {'retry ms':>9} {'append ms':>10}",
    ]
    for size, figures in report["sizes"].items():
        if "skipped" in figures:
            lines.append(f"{size:>6}  skipped: {figures['skipped']}")
        else:
            lines.append(
                f"{size:>6} {figures['prompt_tokens']:>7} {figures['cold_ttft_ms']:>9.1f} "
                f"{figures['retry_ttft_ms']:>9.1f} {figures['append_ttft_ms']:>10.1f}"
            )
    stall = report["stall"]
    lines.append("")
    if "skipped" in stall:
        lines.append(f"stall: skipped: {stall['skipped']}")
    else:
        lines += [
            f"stall: a prompt of {stall['long_prompt_tokens']} tokens arrives while another story streams "
            f"(a token every {stall['stream_gap_ms_p50_before']} ms before it)",
            f"  the stream's largest gap between two tokens: {stall['largest_gap_ms']} ms"
            + ("" if stall["stream_ran_throughout"] else " (the stream ended before the prompt was read)"),
            f"  the long prompt's time to first token: {stall['long_ttft_ms_while_streaming']} ms "
            f"(alone: {stall['long_ttft_ms_alone']} ms)",
        ]
    config = ", ".join(f"{name}={value}" for name, value in report["engine_config"].items())
    lines += ["", f"engine: {config}"]
    return "\n".join(lines)
