"""The training loop: next-token prediction on a corpus's examples, with AdamW, either
through LoRA adapters (peft: small low-rank matrices beside every linear layer, the base
weights frozen) or on all the weights of a small model.

It reports what it does as events, in order, through `on_event`:
  {"type": "started", "train_examples", "heldout_examples", "tokens", "parameters", "trainable"}
  {"type": "evaluation", "step", "loss", "perplexity"}   step 0 is before training
  {"type": "step", "step", "loss", "elapsed_s"}
  {"type": "saved", "step", "reason", "path"}
and asks `should_stop()` before every step (and between evaluation batches), so a cancel
takes effect within one step; what was learned until then is saved.
"""

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from engine.errors import TrainingError
from engine.training.settings import TrainingSettings

# Full fine-tuning holds the weights, their gradients and AdamW's two moments: four
# copies in float32. Above this many parameters, LoRA.
FULL_MAX_PARAMETERS = 600_000_000
# Perplexity is measured on at most this many held-out examples (the first ones).
MAX_EVAL_EXAMPLES = 64


@dataclass(frozen=True)
class Outcome:
    # "steps", "time limit" or "cancelled".
    reason: str
    steps: int
    saved_to: Path


def prepare(model, settings: TrainingSettings):
    """The model to train: wrapped with fresh LoRA adapters, or all of it trainable."""
    parameters = sum(p.numel() for p in model.parameters())
    if settings.method == "full":
        if parameters > FULL_MAX_PARAMETERS:
            raise TrainingError(
                f"Full fine-tuning is for models of at most {FULL_MAX_PARAMETERS / 1e6:.0f}M parameters; "
                f"this one has {parameters / 1e6:.0f}M. Use LoRA."
            )
        model.requires_grad_(True)
        return model
    if settings.method != "lora":
        raise TrainingError(f"Unknown training method {settings.method!r}; use lora or full.")
    config = LoraConfig(
        r=settings.lora_rank,
        lora_alpha=2 * settings.lora_rank,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def evaluate(model, examples: torch.Tensor, batch_size: int, should_stop=lambda: False) -> float | None:
    """The mean next-token loss on `examples` (None when stopped before the end)."""
    examples = examples[:MAX_EVAL_EXAMPLES]
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            if should_stop():
                return None
            batch = examples[start : start + batch_size].to(device)
            total += model(input_ids=batch, labels=batch).loss.item() * len(batch)
            count += len(batch)
    model.train(was_training)
    return total / count


def _batches(train: torch.Tensor, batch_size: int, seed: int):
    """Examples in a fresh random order each pass over the corpus, forever."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(order), batch_size):
            yield train[order[start : start + batch_size]]


def save(model, tokenizer, settings: TrainingSettings, path: Path) -> None:
    """LoRA: the adapter alone (a few MB; the base model is named by the configuration).
    Full: a complete model folder, tokenizer included."""
    partial = path.with_name(path.name + ".partial")
    model.save_pretrained(partial)
    if settings.method == "full":
        tokenizer.save_pretrained(partial)
    if path.exists():
        shutil.rmtree(path)
    partial.rename(path)


def train(loaded, corpus, settings: TrainingSettings, *, save_to: Path, on_event, should_stop=lambda: False) -> Outcome:
    torch.manual_seed(settings.seed)
    model = prepare(loaded.model, settings)
    trainable = [p for p in model.parameters() if p.requires_grad]
    on_event(
        {
            "type": "started",
            "train_examples": len(corpus.train),
            "heldout_examples": len(corpus.heldout),
            "tokens": corpus.tokens,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in trainable),
        }
    )

    def evaluation(step: int) -> bool:
        loss = evaluate(model, corpus.heldout, settings.batch_size, should_stop)
        if loss is None:
            return False
        on_event({"type": "evaluation", "step": step, "loss": loss, "perplexity": math.exp(min(loss, 50))})
        return True

    started = time.monotonic()
    step, reason = 0, "steps"
    if not evaluation(0):
        reason = "cancelled"
    else:
        optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=0.0)
        warmup = min(10, settings.steps // 10)
        device = loaded.device
        model.train()
        batches = _batches(corpus.train, settings.batch_size, settings.seed)
        evaluated = 0
        while step < settings.steps:
            if should_stop():
                reason = "cancelled"
                break
            if time.monotonic() - started > settings.time_limit_s:
                reason = "time limit"
                break
            for group in optimizer.param_groups:
                group["lr"] = settings.learning_rate * min(1.0, (step + 1) / (warmup + 1))
            batch = next(batches).to(device)
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            on_event({"type": "step", "step": step, "loss": loss.item(), "elapsed_s": time.monotonic() - started})
            if step % settings.eval_every == 0:
                if not evaluation(step):
                    reason = "cancelled"
                    break
                evaluated = step
        if reason != "cancelled" and step and evaluated != step:
            evaluation(step)
    model.eval()
    save(model, loaded.tokenizer, settings, save_to)
    on_event({"type": "saved", "step": step, "reason": reason, "path": str(save_to)})
    return Outcome(reason=reason, steps=step, saved_to=save_to)
