"""The editor's context bar, answered on this worker: how the model's window would be spent
on a story now, counted with the serving model's own tokenizer and budget, and how much of
it the prefix cache already holds (docs/protocol.md, `context`)."""

from engine.errors import ModelLoadError
from engine.threads import release_openmp_threads
from generation import context, realtime
from generation.worker.inspection import error_answer
from generation.worker.relay import story_context
from generation.worker.serving import model_wanted, slot
from storyteller.stories.models import Story

# Once the story's room is this full, the bar warns before anything is left out.
NEARLY_FULL = 0.9


def context_preview_run(reply_to: str, story_id: int, text: str, max_new_tokens: int, request_id) -> None:
    ids = {"request_id": request_id} if request_id is not None else {}
    try:
        lease = slot.acquire(model_wanted)
    except ModelLoadError as exc:
        realtime.reply(reply_to, error_answer(ids, "unavailable", f"The model could not be loaded: {exc}"))
        return
    try:
        story = Story.objects.get(pk=story_id)
        answer = {
            "type": "context",
            **ids,
            "model": lease.engine.name,
            **context_preview(lease.engine, story, text, max_new_tokens),
        }
    except Story.DoesNotExist:
        answer = error_answer(ids, "not_found", "The story is gone.")
    finally:
        slot.release(lease)
        # This thread lives on in the worker's pool: its OpenMP team would slow the engine.
        release_openmp_threads()
    realtime.reply(reply_to, answer)


def context_preview(engine, story, text: str, max_new_tokens: int) -> dict:
    """The window, what each part of the prompt takes, how much of the story is read and
    left out, the room for the continuation, and what is cached."""
    tokenizer = engine.tokenizer
    budget = engine.prompt_budget(max_new_tokens)
    story_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
    known = {
        "window": engine.context_window,
        "budget": budget,
        "max_new_tokens": min(max_new_tokens, engine.context_window - 1),
        "story_tokens": story_tokens,
    }
    try:
        prompt = context.assemble(tokenizer, text, story_context(story), budget)
    except context.ContextTooLarge as exc:
        refused = {"parts": [], "prompt_tokens": 0, "story_read": 0, "story_left_out": story_tokens}
        return {**known, **refused, "cached_tokens": 0, "warnings": [str(exc)], "refused": True}
    story_read = sum(part.tokens for part in prompt.parts if part.kind == "story")
    story_room = budget - sum(part.tokens for part in prompt.parts if part.kind != "story")
    warnings = list(prompt.warnings)
    left_out = max(story_tokens - story_read, 0)
    if left_out:
        warnings.append(
            f"The model reads the last {story_read:,} of your story's {story_tokens:,} tokens: "
            f"the oldest {left_out:,} are left out."
        )
    elif story_room > 0 and story_read >= NEARLY_FULL * story_room:
        warnings.append(
            f"Your story fills {round(100 * story_read / story_room)}% of the model's room for it: about "
            f"{story_room - story_read:,} tokens more, and its oldest text starts to be left out."
        )
    return {
        **known,
        "parts": [{"kind": part.kind, "label": part.label, "tokens": part.tokens} for part in prompt.parts],
        "prompt_tokens": len(prompt.ids),
        "story_read": story_read,
        "story_left_out": left_out,
        "cached_tokens": min(engine.cached_tokens(prompt.ids), len(prompt.ids)),
        "warnings": warnings,
        "refused": False,
    }
