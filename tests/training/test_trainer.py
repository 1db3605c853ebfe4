"""The training loop on the tiny model: it learns (the held-out loss falls), what it saves
loads and changes the model's output, a cancel stops it within one step, and it reports
its progress in order."""

import dataclasses

import pytest

from engine.config import ModelSpec, SamplingParams
from engine.engine import Engine
from engine.loader import load
from engine.training import corpus, trainer
from tests.engine.helpers import run

pytestmark = pytest.mark.nodb  # no database: the PostgreSQL pass skips it

STYLE = "The lighthouse keeper counted the gulls at dawn, and the sea answered him in silver. "
SETTINGS = trainer.TrainingSettings(steps=30, learning_rate=1e-2, batch_size=4, eval_every=10, lora_rank=8, seed=1)
GREEDY = SamplingParams(max_new_tokens=16, temperature=0, top_k=0, top_p=1.0, ignore_eos=True)


def a_corpus(tokenizer, sequence_length=32):
    documents = [corpus.Document(f"story {i}", STYLE * 12) for i in range(3)]
    return corpus.build(tokenizer, documents, sequence_length=sequence_length, heldout_percent=20)


def train(tiny_model_dir, tmp_path, settings=SETTINGS, should_stop=lambda events: False):
    loaded = load(ModelSpec(source=str(tiny_model_dir), dtype="float32", device="cpu"))
    events = []
    outcome = trainer.train(
        loaded,
        a_corpus(loaded.tokenizer),
        settings,
        save_to=tmp_path / "result",
        on_event=events.append,
        should_stop=lambda: should_stop(events),
    )
    return outcome, events


def evaluations(events):
    return [(e["step"], e["loss"]) for e in events if e["type"] == "evaluation"]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_few_dozen_steps_on_a_repeated_text_lower_the_held_out_loss(tiny_model_dir, tmp_path, method):
    outcome, events = train(tiny_model_dir, tmp_path, dataclasses.replace(SETTINGS, method=method))
    assert (outcome.reason, outcome.steps) == ("steps", 30)
    losses = evaluations(events)
    assert [step for step, _ in losses] == [0, 10, 20, 30]
    before, after = losses[0][1], losses[-1][1]
    assert after < 0.7 * before, losses


def test_the_saved_adapter_loads_and_changes_what_the_model_writes(tiny_model_dir, tmp_path):
    outcome, _ = train(tiny_model_dir, tmp_path)
    assert (outcome.saved_to / "adapter_config.json").is_file()
    base = Engine.load(ModelSpec(source=str(tiny_model_dir)))
    trained = Engine.load(ModelSpec(source=str(tiny_model_dir), adapter=str(outcome.saved_to)))
    # The adapter is merged into the float32 weights before they are packed into int8.
    trained_int8 = Engine.load(ModelSpec(source=str(tiny_model_dir), adapter=str(outcome.saved_to), dtype="int8"))
    try:
        assert trained.name.endswith("+result") and trained_int8.loaded.weights == "int8"
        before = run(base, "The lighthouse keeper", GREEDY)[2].text
        for engine in (trained, trained_int8):
            after = run(engine, "The lighthouse keeper", GREEDY)[2].text
            assert after != before
            assert "gulls" in after or "sea" in after or "silver" in after, after  # it learned the style
    finally:
        base.shutdown()
        trained.shutdown()
        trained_int8.shutdown()


def test_a_cancel_stops_within_one_step_and_keeps_what_was_learned(tiny_model_dir, tmp_path):
    def after_step_3(events):
        return any(e["type"] == "step" and e["step"] == 3 for e in events)

    outcome, events = train(tiny_model_dir, tmp_path, should_stop=after_step_3)
    assert (outcome.reason, outcome.steps) == ("cancelled", 3)
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2, 3]
    assert (outcome.saved_to / "adapter_config.json").is_file()
    assert events[-1] == {"type": "saved", "step": 3, "reason": "cancelled", "path": str(outcome.saved_to)}


def test_a_time_limit_stops_training_and_keeps_the_result(tiny_model_dir, tmp_path):
    outcome, events = train(tiny_model_dir, tmp_path, dataclasses.replace(SETTINGS, time_limit_s=0))
    assert (outcome.reason, outcome.steps) == ("time limit", 0)
    assert (outcome.saved_to / "adapter_config.json").is_file()


def test_progress_events_arrive_in_order(tiny_model_dir, tmp_path):
    _, events = train(tiny_model_dir, tmp_path, dataclasses.replace(SETTINGS, steps=12, eval_every=5))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "started" and kinds[1] == "evaluation" and kinds[-1] == "saved"
    assert [e["step"] for e in events if e["type"] == "step"] == list(range(1, 13))
    assert [step for step, _ in evaluations(events)] == [0, 5, 10, 12]
    # Each evaluation comes right after the step it measured.
    for index, event in enumerate(events):
        if event["type"] == "evaluation" and event["step"]:
            assert events[index - 1] == {**events[index - 1], "type": "step", "step": event["step"]}
    elapsed = [e["elapsed_s"] for e in events if e["type"] == "step"]
    assert elapsed == sorted(elapsed)
    assert events[0]["trainable"] < events[0]["parameters"]  # LoRA trains a small part


def test_full_fine_tuning_is_refused_for_a_model_too_big_for_it(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "FULL_MAX_PARAMETERS", 1000)
    with pytest.raises(trainer.TrainingError, match="Use LoRA"):
        train(tiny_model_dir, tmp_path, dataclasses.replace(SETTINGS, method="full"))
    assert not (tmp_path / "result").exists()
