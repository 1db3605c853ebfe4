"""Measuring the engine against transformers' own `model.generate`, in one process.

Both run the same prompts with the same sampling parameters and exactly the same number of
new tokens (end-of-text is ignored), so tokens per second compare like with like. The
baseline is the plain way to run the model: the same source loaded again in float32, with
transformers' own modules, whatever the benchmarked configuration holds its weights as; and
the same float32 model scores the quality figure's fixed passage beside the benchmarked one.
"""

import dataclasses
import resource
import statistics
import threading
import time

import torch

from engine import loader
from engine.config import ModelSpec, SamplingParams
from engine.engine import Engine, Request
from engine.events import Finished
from engine.weights import PackedLinear, weight_bytes
from generation.management import quality

PROMPTS = [
    "Once upon a time, there was a cat named Whiskers.",
    "The lighthouse keeper had not seen a ship in forty days when the storm finally broke.",
    "Mara found the letter under a loose floorboard in her grandmother's kitchen.",
    "In the city of glass towers, nobody remembered what rain sounded like.",
    "The dragon was smaller than the stories said, and much more polite.",
    "On the last night of summer, the twins decided to follow the fox into the forest.",
    "Captain Ilsa Varga read the distress signal twice before she believed it.",
    "Every morning the baker left one loaf on the windowsill, and every morning it vanished.",
]


def params_for(index: int, new_tokens: int, record_choices: int = 0) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=new_tokens,
        temperature=0.8,
        top_k=50,
        top_p=0.95,
        repetition_penalty=1.1,
        seed=index,
        ignore_eos=True,
        record_choices=record_choices,
    )


def bench_hf_generate(loaded: loader.LoadedModel, *, stories: int, new_tokens: int) -> dict:
    """One story at a time through `model.generate`, the usual way to run a HF model."""
    model, tokenizer = loaded.model, loaded.tokenizer
    total_tokens, total_s = 0, 0.0
    for index in range(stories):
        ids = tokenizer(PROMPTS[index % len(PROMPTS)], return_tensors="pt").input_ids.to(loaded.device)
        params = params_for(index, new_tokens)
        torch.manual_seed(params.seed)
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=params.temperature,
                top_k=params.top_k,
                top_p=params.top_p,
                repetition_penalty=params.repetition_penalty,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                pad_token_id=tokenizer.eos_token_id,
            )
        total_s += time.perf_counter() - started
        total_tokens += out.shape[1] - ids.shape[1]
    return {"tokens_per_s": round(total_tokens / total_s, 2)}


def bench_engine(engine: Engine, *, concurrency: int, new_tokens: int, record_choices: int = 0) -> dict:
    """`concurrency` stories submitted at once, each followed by its own thread, as the
    worker's task threads do."""
    results: list[tuple[float, Finished, float]] = []
    lock = threading.Lock()

    def follow(index: int) -> None:
        submitted = time.perf_counter()
        params = params_for(index, new_tokens, record_choices)
        handle = engine.submit(Request(f"bench-{index}", PROMPTS[index % len(PROMPTS)], params))
        for event in handle.events():
            if isinstance(event, Finished):
                with lock:
                    results.append((submitted, event, time.perf_counter()))

    threads = [threading.Thread(target=follow, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started

    per_story, ttfts = [], []
    for submitted, finished, done_at in results:
        first_token_at = submitted + finished.ttft_ms / 1000
        per_story.append((finished.new_tokens - 1) / max(done_at - first_token_at, 1e-9))
        ttfts.append(finished.ttft_ms)
    return {
        "aggregate_tokens_per_s": round(sum(f.new_tokens for _, f, _ in results) / wall, 2),
        "per_story_tokens_per_s_p50": round(statistics.median(per_story), 2),
        "ttft_ms_p50": round(statistics.median(ttfts), 1),
    }


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run(
    engine: Engine,
    spec: ModelSpec,
    *,
    concurrency_levels: list[int],
    new_tokens: int,
    hf_stories: int,
    record_choices: int = 0,
) -> dict:
    """The engine at each concurrency level, then, with the engine shut down (and the
    worker's memory read before a second model is loaded), the float32 baseline and the
    quality figures. `spec` is the engine's model's."""
    # A short warm-up, so that first-call costs (allocations, kernels) are not measured.
    bench_engine(engine, concurrency=1, new_tokens=4)
    # FBGEMM's packed layers (float16 and int8 weights on the CPU); else SkinnyLinear or nn.Linear.
    linears = "skinny" if engine.config.skinny_linears else "plain"
    if any(isinstance(module, PackedLinear) for module in engine.loaded.model.modules()):
        linears = "packed"
    report = {
        "model": engine.name,
        "device": engine.loaded.device.type,
        "dtype": str(engine.loaded.dtype).removeprefix("torch."),
        "weights": engine.loaded.weights,
        "threads": torch.get_num_threads(),
        "linears": linears,
        "new_tokens": new_tokens,
        "record_choices": record_choices,
        "engine": {},
    }
    for level in concurrency_levels:
        report["engine"][str(level)] = bench_engine(
            engine, concurrency=level, new_tokens=new_tokens, record_choices=record_choices
        )
    report["worker_rss_mb"] = peak_rss_mb()
    report["model_weights_mb"] = round(weight_bytes(engine.loaded.model) / 2**20, 1)
    # The engine's loop ends here: its thread's OpenMP team would slow model.generate in
    # this one as much as this thread's slowed the engine (engine/threads.py).
    engine.shutdown()
    baseline = loader.load(dataclasses.replace(spec, dtype="float32"))
    report["hf_generate"] = bench_hf_generate(baseline, stories=hf_stories, new_tokens=new_tokens)
    report["vs_hf_generate"] = {
        level: round(figures["aggregate_tokens_per_s"] / report["hf_generate"]["tokens_per_s"], 2)
        for level, figures in report["engine"].items()
    }
    text, window = quality.passage(), min(quality.WINDOW, engine.context_window)
    report["quality"] = {
        "perplexity": round(quality.perplexity(engine.loaded.model, engine.tokenizer, text, window=window), 3),
        "perplexity_float32": round(quality.perplexity(baseline.model, baseline.tokenizer, text, window=window), 3),
    }
    return report
