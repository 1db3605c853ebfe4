"""What the model reads: the writer's memory, triggered lore, the story and the author's note,
fitted to a token budget with the model's own tokenizer.

The prompt, top to bottom:

    memory          always first; never trimmed
    lore entries    those whose keys fire on the end of the story (generation/lore.py), by
                    priority; never trimmed
    story text      its oldest tokens left out, in steps, to fit the budget
    author's note   inside the story, `note_depth` paragraphs before its end; never trimmed
    story text      (the paragraphs after the note)

Memory, note and lore are never cut silently: lore that does not fit is left out with a
warning naming it (entries are taken by priority, so the lowest go first), and when memory
and note alone leave no room for any story, the prompt is refused (ContextTooLarge) with a
message saying how much to cut. Each part is tokenized
on its own, so the token count per part is exact and the ids are their concatenation.

A story that outgrows its room loses its oldest tokens in steps of a quarter of the room
(`cut_offset`), not exactly as many as it must: the cut then stays put while the writer
adds text at the end, the prompt begins with the same ids from one Generate to the next,
and an engine that reuses what it has read of a prompt beginning the same way reads
only the new text. After each step about three quarters of the room is story. The kept
story is a slice of the story's own ids, never encoded again, and its text is what those
ids decode to (it may begin inside a word, or inside a character as U+FFFD). Lore can
still change the beginning, when an entry starts or stops being triggered as the writer
adds text (docs/architecture.md has how often that happens).

No Django here: the worker calls `assemble` with its engine's tokenizer and budget.
"""

import re
import secrets
import time
from dataclasses import dataclass, field

from generation import lore as lorebook

# Memory, note and lore may use the budget up to this many tokens before the end of it:
# a prompt with no room for the story it continues is refused instead.
MIN_STORY_TOKENS = 32
NOTE_TEMPLATE = "[Author's note: {}]"


def note_line(note: str) -> str:
    """The note as the model reads it: in NOTE_TEMPLATE, unless the writer already put it
    in brackets ("[Style: terse, dark]"), which the model then reads as written."""
    return note if note.startswith("[") and note.endswith("]") else NOTE_TEMPLATE.format(note)


class ContextTooLarge(Exception):
    """Memory and the author's note do not fit; the message says by how much."""


@dataclass(frozen=True)
class LoreEntry:
    keys: tuple[str, ...]
    text: str
    name: str = ""
    id: int | None = None
    secondary_keys: tuple[str, ...] = ()
    # How the secondary keys count (generation/lore.py, LOGICS).
    logic: str = "and_any"
    # Taken first when the budget is short, and put first; the same, in the book's order.
    priority: int = 100
    # How many characters from the end of the story its keys are looked for in; None: the default.
    scan_chars: int | None = None

    def judge(self, story: str, deadline: float | None = None) -> lorebook.Verdict:
        keys, secondary = list(self.keys), list(self.secondary_keys)
        return lorebook.judge(keys, secondary, self.logic, self.scan_chars, story, deadline)


@dataclass(frozen=True)
class StoryContext:
    memory: str = ""
    note: str = ""
    # 0 puts the note after the last paragraph; 3 puts it before the third paragraph from the end.
    note_depth: int = 3
    lore: tuple[LoreEntry, ...] = ()


@dataclass(frozen=True)
class Part:
    kind: str  # memory, lore, story, note; tool (a selection tool's request)
    label: str
    text: str
    tokens: int

    def as_dict(self) -> dict:
        return {"kind": self.kind, "label": self.label, "text": self.text, "tokens": self.tokens}


@dataclass
class Prompt:
    parts: list[Part]
    ids: list[int]
    budget: int
    # Story tokens left out at the oldest end to fit the budget, in steps (cut_offset).
    trimmed_tokens: int = 0
    warnings: list[str] = field(default_factory=list)
    # Every lore entry with its verdict on the story and where it went: the Test box's answer.
    lore: list[dict] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.parts)

    def as_dict(self) -> dict:
        return {
            "parts": [part.as_dict() for part in self.parts],
            "prompt_tokens": len(self.ids),
            "budget": self.budget,
            "trimmed_tokens": self.trimmed_tokens,
            "warnings": list(self.warnings),
            "lore": list(self.lore),
        }


def split_for_note(story: str, depth: int) -> tuple[str, str]:
    """Splits the story before its `depth`-th paragraph from the end (paragraphs are lines)."""
    if depth <= 0:
        return story, ""
    starts = [0] + [m.end() for m in re.finditer(r"\n+", story) if m.end() < len(story)]
    if depth >= len(starts):
        return "", story
    cut = starts[-depth]
    return story[:cut], story[cut:]


def cut_offset(before: int, after: int, room: int) -> int:
    """How many of the story's oldest tokens to leave out, given its token counts before and
    after the author's note and the room it has.

    The cut is the smallest multiple of a quarter of the room that makes the rest fit, so
    it stays where it is while the writer adds text at the end, until the story outgrows
    the room again and the cut moves on by a step, leaving about three quarters of it.
    An engine that reuses what it has read of a prompt beginning the same way then
    reads only the new text. A step that would cut into the text after the note, when
    cutting just up to the note fits, cuts up to the note instead.
    """
    total = before + after
    if total <= room:
        return 0
    step = max(1, room // 4)
    exact = total - room
    stepped = -(-exact // step) * step  # exact, rounded up to whole steps
    return before if exact <= before < stepped else stepped


def assemble(tokenizer, story: str, context: StoryContext, budget: int) -> Prompt:
    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def tokens_of(parts: list[tuple[str, str, str, list[int]]]) -> int:
        return sum(len(ids) for *_, ids in parts)

    fixed_room = budget - MIN_STORY_TOKENS
    memory = context.memory.strip()
    note = context.note.strip()
    memory_part = ("memory", "Memory", memory + "\n\n", encode(memory + "\n\n")) if memory else None
    before, after = split_for_note(story, context.note_depth) if note else (story, "")
    note_text = ""
    if note:
        lead = "" if not before or before.endswith("\n") else "\n"
        note_text = f"{lead}{note_line(note)}\n"
    note_part = ("note", "Author's Note", note_text, encode(note_text)) if note else None
    essential = [p for p in (memory_part, note_part) if p]
    if tokens_of(essential) > fixed_room:
        raise ContextTooLarge(
            f"Memory and the Author's Note take {tokens_of(essential)} tokens, but this model reads "
            f"{budget} tokens before the continuation and the story needs at least {MIN_STORY_TOKENS} of them. "
            f"Shorten them by {tokens_of(essential) - fixed_room} tokens or more."
        )

    warnings: list[str] = []
    lore_parts = []
    report = []
    # The writer's priority decides which entries are searched first, while the searches'
    # shared time lasts, and which the budget keeps when not all fit. Every entry is judged
    # before any is tokenized, so that the time allowed is spent searching only.
    ranked = sorted(enumerate(context.lore), key=lambda item: (-item[1].priority, item[0]))
    deadline = time.monotonic() + lorebook.SEARCH_BUDGET_S
    verdicts = [entry.judge(story, deadline) for _, entry in ranked]
    for (index, entry), verdict in zip(ranked, verdicts, strict=True):
        label = entry.name or ", ".join(k.strip() for k in entry.keys if k.strip()) or f"Entry {index + 1}"
        line = {"id": entry.id, "name": label, "priority": entry.priority, **verdict.as_dict()}
        report.append(line)
        if not entry.text.strip():
            line.update(fires=False, reason="empty")
        if not line["fires"]:
            line["placed"] = False
            continue
        text = entry.text.strip() + "\n"
        ids = encode(text)
        line["tokens"] = len(ids)
        line["placed"] = tokens_of(essential + lore_parts) + len(ids) <= fixed_room
        if not line["placed"]:
            warnings.append(
                f"The lore entry \u201c{label}\u201d was triggered but left out: it takes {len(ids)} tokens "
                "and memory, note and other lore already fill the context."
            )
            continue
        lore_parts.append(("lore", f"Lore: {label}", text, ids))

    room = budget - tokens_of(essential + lore_parts)
    before_ids, after_ids = encode(before), encode(after)
    trimmed = cut_offset(len(before_ids), len(after_ids), room)
    cut_before = min(trimmed, len(before_ids))
    cut_after = trimmed - cut_before
    before_ids, after_ids = before_ids[cut_before:], after_ids[cut_after:]
    if cut_after:
        warnings.append(
            "The story before the Author's Note was left out entirely, and some after it, to fit the context; "
            "lower the note's depth or shorten memory and lore."
        )

    ordered = [*([memory_part] if memory_part else []), *lore_parts]
    if before_ids:
        ordered.append(("story", "Story", tokenizer.decode(before_ids) if cut_before else before, before_ids))
    if note_part:
        ordered.append(note_part)
    if after_ids:
        label = "Story (after the note)" if note_part else "Story"
        ordered.append(("story", label, tokenizer.decode(after_ids) if cut_after else after, after_ids))
    parts = [Part(kind, label, text, len(ids)) for kind, label, text, ids in ordered]
    ids = [token for *_, part_ids in ordered for token in part_ids]
    return Prompt(parts=parts, ids=ids, budget=budget, trimmed_tokens=trimmed, warnings=warnings, lore=report)


# ---- the selection tools: the instruct model asked, in its chat template -----------------

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
TOOL_SYSTEM = "You are a writing assistant helping a writer with a story."


def task_of(tool: dict) -> str:
    return tool["instruction"] if tool["action"] == "instruct" else TASKS[tool["action"]]


def _tool_messages(tool: dict, memory: str, mark: str) -> list[dict]:
    """The story (at `mark`) goes with the system's words, the task and the passage are the
    writer's message: the small instruct model then answers with the passage alone. A
    summary is asked of the story alone, in the writer's message."""
    if tool["action"] == "summarize":
        return [
            {"role": "system", "content": TOOL_SYSTEM},
            {"role": "user", "content": f"{task_of(tool)}:\n\n{mark}"},
        ]
    notes = f" Notes on it: {memory.strip()}" if memory.strip() else ""
    return [
        {"role": "system", "content": f"{TOOL_SYSTEM}{notes} The story so far:\n{mark}"},
        {"role": "user", "content": f"{task_of(tool)}:\n\n{tool['selection']}"},
    ]


def assemble_tool(tokenizer, story: str, tool: dict, context: StoryContext, budget: int) -> Prompt:
    """The prompt of a selection tool (generation/tools.py): its task, the passage and the
    story before it (all of the story, for a summary), in the model's chat template when
    it has one (an instruct model's), else as plain text with "Answer:" at its end. The story's oldest tokens are
    left out to fit; the rest never is (ContextTooLarge says by how much it is over)."""

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    # Where the story goes, split out so that only the story is trimmed to fit: a mark
    # nothing the writer sends can hold.
    mark = f"\x00story-{secrets.token_hex(8)}\x00"
    messages = _tool_messages(tool, context.memory, mark)
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        rendered = "".join(f"{message['content']}\n\n" for message in messages) + "Answer:\n"
    head, tail = rendered.split(mark)
    head_ids, tail_ids = encode(head), encode(tail)
    needed = MIN_STORY_TOKENS if tool["action"] == "summarize" else 0
    room = budget - len(head_ids) - len(tail_ids)
    if room < needed:
        what = "The request" if tool["action"] == "summarize" else "The passage and the request"
        raise ContextTooLarge(
            f"{what} take {len(head_ids) + len(tail_ids)} tokens, but this model reads {budget} tokens before "
            f"its answer{f' and the story needs at least {needed} of them' if needed else ''}. "
            "Select a shorter passage, or ask for fewer new tokens."
        )
    story_ids = encode(story)
    trimmed = max(0, len(story_ids) - room)
    kept = story_ids[trimmed:]
    ordered = [("tool", "Request", head, head_ids)]
    if kept:
        ordered.append(("story", "Story", tokenizer.decode(kept) if trimmed else story, kept))
    ordered.append(("tool", "Request (after the story)", tail, tail_ids))
    parts = [Part(kind, label, text, len(ids)) for kind, label, text, ids in ordered]
    ids = [token for *_, part_ids in ordered for token in part_ids]
    return Prompt(parts=parts, ids=ids, budget=budget, trimmed_tokens=trimmed)
