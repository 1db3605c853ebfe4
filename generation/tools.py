"""The selection tools: a passage of the story rewritten, expanded, described or shortened
by the instruct model, or changed by the writer's own instruction; and a summary of the
story for its memory. What a `generate` message's `tool` may hold, and what each action
asks of the model. Plain Python: the web side checks with it, the worker builds the
prompt from it (generation/context.py, assemble_tool).
"""

from storyteller.validators import Invalid, check_dict, check_string

SELECTION_MAX_CHARS = 20_000
INSTRUCTION_MAX_CHARS = 500

# What each action asks, put to the model before the passage (or the story, for a summary):
# short and plain, which a small instruct model follows best (SmolLM2-135M-Instruct answers
# these with prose and ends; longer requests it echoes, or answers about). "instruct" asks
# what the writer typed.
TASKS = {
    "rewrite": "Rewrite this passage in other words",
    "expand": "Expand this passage with more detail",
    "describe": "Describe what this passage shows in vivid detail: what can be seen, heard, smelled and felt",
    "shorten": "Shorten this passage",
    "summarize": "Summarize this story in a few sentences",
}
ACTIONS = (*TASKS, "instruct")
# The tools that work on a selected passage; summarize reads the whole story instead.
ON_A_PASSAGE = ("rewrite", "expand", "describe", "shorten", "instruct")
# What the Tree panel and the editor call each action's result.
LABELS = {
    "rewrite": "Rewrite",
    "expand": "Expand",
    "describe": "Describe",
    "shorten": "Shorten",
    "instruct": "Instruction",
    "summarize": "Summary",
}


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


def task_of(tool: dict) -> str:
    return tool["instruction"] if tool["action"] == "instruct" else TASKS[tool["action"]]
