"""What a training run is asked to do, and the defaults that the admin's job form, the
`train` command and the trainer all start from. Plain values, no torch: the web side reads
them for its form's initial values."""

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingSettings:
    # "lora" (small low-rank adapters beside every linear layer) or "full" (every weight).
    method: str = "lora"
    # Optimizer steps to take, unless the time limit or a cancel comes first.
    steps: int = 100
    # AdamW's learning rate.
    learning_rate: float = 2e-4
    # Examples in each step.
    batch_size: int = 4
    # Training stops here even before its steps are done, and keeps what it learned.
    time_limit_s: float = 3600.0
    # Held-out perplexity is measured every this many steps (and before the first).
    eval_every: int = 20
    # The rank of the LoRA matrices; their alpha is twice this.
    lora_rank: int = 8
    # Seeds the adapters' initial weights and the order of the examples.
    seed: int = 0


DEFAULTS = TrainingSettings()

# How the corpus is cut (engine/training/corpus.py): tokens per example, and the share of
# the examples kept aside to measure perplexity.
SEQUENCE_LENGTH = 128
HELDOUT_PERCENT = 10
