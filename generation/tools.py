"""The selection tools: a passage of the story rewritten, expanded, described or shortened
by the instruct model, or changed by the writer's own instruction; and a summary of the
story for its memory. What a `generate` message's `tool` may hold, checked on the web side;
what each action asks of the model is with the prompt (generation/context.py, TASKS).
"""

from generation.context import TASKS
from storyteller.validators import Invalid, check_dict, check_string

SELECTION_MAX_CHARS = 20_000
INSTRUCTION_MAX_CHARS = 500

ACTIONS = (*TASKS, "instruct")
# The tools that work on a selected passage; summarize reads the whole story instead.
ON_A_PASSAGE = ("rewrite", "expand", "describe", "shorten", "instruct")


def check_tool(value) -> dict:
    """The `tool` of a generate message, checked: {"action", "selection"?, "instruction"?},
    or Invalid naming the field (`tool.<name>`)."""
    check_dict("tool", value)
    unknown = sorted(set(value) - {"action", "selection", "instruction"})
    if unknown:
        raise Invalid(
            f"tool.{unknown[0]}", f"tool.{unknown[0]} is not a field of tool (action, selection, instruction)."
        )
    action = value.get("action")
    if action not in ACTIONS:
        raise Invalid("tool.action", f"tool.action is one of {', '.join(ACTIONS)}.")
    tool = {"action": action}
    if action in ON_A_PASSAGE:
        selection = check_string("tool.selection", value.get("selection"))
        if not selection.strip():
            raise Invalid("tool.selection", f"tool.selection is the passage to {action}; it is empty.")
        if len(selection) > SELECTION_MAX_CHARS:
            raise Invalid("tool.selection", f"tool.selection is at most {SELECTION_MAX_CHARS:,} characters.")
        tool["selection"] = selection
    elif "selection" in value:
        raise Invalid("tool.selection", f"{action} reads the whole story: send no tool.selection.")
    if action == "instruct":
        instruction = check_string("tool.instruction", value.get("instruction"))
        if not instruction.strip():
            raise Invalid("tool.instruction", "tool.instruction says what to do with the passage; it is empty.")
        if len(instruction) > INSTRUCTION_MAX_CHARS:
            raise Invalid("tool.instruction", f"tool.instruction is at most {INSTRUCTION_MAX_CHARS} characters.")
        tool["instruction"] = instruction.strip()
    elif "instruction" in value:
        raise Invalid("tool.instruction", 'Only the "instruct" action takes tool.instruction.')
    return tool
