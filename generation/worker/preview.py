"""The editor's context bar, answered on this worker: how the model's window would be spent
on a story now, counted with the serving model's own tokenizer and budget, and how much of
it the prefix cache already holds (docs/protocol.md, `context`)."""

from generation import context
from generation.worker.inspection import answer_with_model, error_answer
from generation.worker.relay import story_context
from storyteller.stories.models import Story

# Once the story's room is this full, the bar warns before anything is left out.
NEARLY_FULL = 0.9


def context_preview_run(reply_to: str, story_id: int, text: str, max_new_tokens: int, request_id) -> None:
    def answer(engine, ids: dict) -> dict:
        story = Story.objects.filter(pk=story_id).first()
        if story is None:
            return error_answer(ids, "not_found", "The story is gone.")
        return {"type": "context", **ids, "model": engine.name, **context_preview(engine, story, text, max_new_tokens)}

    answer_with_model(reply_to, request_id, answer)


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
        refused = {"parts": [], "prompt_tokens": 0, "story_read": 0, "story_left_out": story_tokens, "lore": []}
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
        # Which lore entries fire on this text and why, and which the budget left out.
        "lore": prompt.lore,
    }
