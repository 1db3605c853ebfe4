"""generation/context.py with the tiny test model's real tokenizer."""

import pytest
from transformers import AutoTokenizer

from generation.context import (
    MIN_STORY_TOKENS,
    ContextTooLarge,
    LoreEntry,
    StoryContext,
    assemble,
    split_for_note,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def count(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


STORY = "The cat slept by the fire.\nThe boats came home.\nA storm came over the sea.\nMara ran to the pier."


def test_without_context_the_prompt_is_the_story(tokenizer):
    prompt = assemble(tokenizer, STORY, StoryContext(), budget=400)

    assert prompt.text == STORY
    assert [p.kind for p in prompt.parts] == ["story"]
    assert prompt.ids == tokenizer(STORY, add_special_tokens=False)["input_ids"]
    assert prompt.trimmed_tokens == 0 and prompt.warnings == []


def test_memory_comes_first_and_the_note_sits_depth_paragraphs_before_the_end(tokenizer):
    context = StoryContext(memory="Mara is a fisher.", note="Keep it gentle.", note_depth=2)

    prompt = assemble(tokenizer, STORY, context, budget=400)

    assert [p.kind for p in prompt.parts] == ["memory", "story", "note", "story"]
    assert prompt.text == (
        "Mara is a fisher.\n\n"
        "The cat slept by the fire.\nThe boats came home.\n"
        "[Author's note: Keep it gentle.]\n"
        "A storm came over the sea.\nMara ran to the pier."
    )
    # Each part's count is exact, and the ids are the parts' ids in order.
    assert [p.tokens for p in prompt.parts] == [count(tokenizer, p.text) for p in prompt.parts]
    assert len(prompt.ids) == sum(p.tokens for p in prompt.parts)


@pytest.mark.parametrize(
    ("depth", "before", "after"),
    [
        (0, "a\nb\nc", ""),
        (1, "a\nb\n", "c"),
        (3, "", "a\nb\nc"),
        (9, "", "a\nb\nc"),
    ],
)
def test_split_for_note_counts_paragraphs_from_the_end(depth, before, after):
    assert split_for_note("a\nb\nc", depth) == (before, after)


def test_the_oldest_story_text_is_trimmed_first_and_memory_and_note_are_kept(tokenizer):
    paragraphs = [f"The cat {'and the boats ' * (i % 5)}slept by the fire." for i in range(60)]
    story = "\n".join(paragraphs)
    context = StoryContext(memory="Mara is a fisher.", note="Keep it gentle.", note_depth=1)
    memory_tokens = count(tokenizer, "Mara is a fisher.\n\n")
    note_tokens = count(tokenizer, "[Author's note: Keep it gentle.]\n")
    last_ids = tokenizer(paragraphs[-1], add_special_tokens=False)["input_ids"]
    story_tokens = count(tokenizer, story.rsplit("\n", 1)[0] + "\n") + len(last_ids)

    prompt = assemble(tokenizer, story, context, budget=120)

    assert len(prompt.ids) == 120
    assert [p.kind for p in prompt.parts] == ["memory", "story", "note", "story"]
    assert prompt.parts[0].text == "Mara is a fisher.\n\n" and prompt.parts[0].tokens == memory_tokens
    assert prompt.parts[2].text == "[Author's note: Keep it gentle.]\n" and prompt.parts[2].tokens == note_tokens
    # The newest paragraph is whole, after the note; the cut came off the oldest end.
    assert prompt.ids[-len(last_ids) :] == last_ids and prompt.parts[3].text == paragraphs[-1]
    assert prompt.trimmed_tokens == story_tokens - (120 - memory_tokens - note_tokens)
    assert prompt.warnings == []


def test_lore_is_inserted_only_when_a_keyword_appears_near_the_end(tokenizer):
    lore = (
        LoreEntry(keys=("pier",), text="The pier is old and creaks."),
        LoreEntry(keys=("dragon", "wyrm"), text="Dragons sleep under the hill."),
        LoreEntry(keys=("Rin",), text="Rin is Mara's brother."),
    )

    prompt = assemble(tokenizer, STORY + " She was bringing fish.", StoryContext(lore=lore), budget=400)

    lore_parts = [p for p in prompt.parts if p.kind == "lore"]
    assert [p.text for p in lore_parts] == ["The pier is old and creaks.\n"]
    assert lore_parts[0].label == "Lore: pier"
    # Whole words only, in any case: "bringing" does not trigger "Rin", "PIER" would.
    upper = assemble(tokenizer, "They met at the PIER.", StoryContext(lore=lore), budget=400)
    assert [p.kind for p in upper.parts] == ["lore", "story"]


def test_lore_that_does_not_fit_is_left_out_with_a_warning(tokenizer):
    big = "The sea is wide and the boats are small and the cat is on the boat. " * 10
    lore = (LoreEntry(keys=("sea",), text=big, name="The sea"), LoreEntry(keys=("pier",), text="Old pier."))

    prompt = assemble(tokenizer, STORY, StoryContext(lore=lore), budget=100)

    assert [p.label for p in prompt.parts if p.kind == "lore"] == ["Lore: pier"]
    assert len(prompt.warnings) == 1 and "The sea" in prompt.warnings[0]
    assert len(prompt.ids) <= 100


def test_memory_and_note_that_leave_no_room_for_the_story_are_refused(tokenizer):
    memory = "Mara is a fisher who lives by the sea with her cat. " * 8
    needed = count(tokenizer, memory.strip() + "\n\n")

    with pytest.raises(ContextTooLarge, match=rf"take {needed} tokens.*Shorten them by"):
        assemble(tokenizer, STORY, StoryContext(memory=memory), budget=needed + MIN_STORY_TOKENS - 1)
    assert assemble(tokenizer, STORY, StoryContext(memory=memory), budget=needed + MIN_STORY_TOKENS).parts


def test_an_empty_story_with_memory_still_makes_a_prompt(tokenizer):
    prompt = assemble(tokenizer, "", StoryContext(memory="A tale of boats.", note="Calm."), budget=200)

    assert [p.kind for p in prompt.parts] == ["memory", "note"]
    assert prompt.text == "A tale of boats.\n\n[Author's note: Calm.]\n"
