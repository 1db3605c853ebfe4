"""generation/context.py with the tiny test model's real tokenizer."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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
    ("note", "line"),
    [
        ("Keep it gentle.", "[Author's note: Keep it gentle.]"),
        # Already in brackets, as writers coming from other tools write it: read as written.
        ("[Style: terse, dark]", "[Style: terse, dark]"),
        ("  [Genre: horror]  ", "[Genre: horror]"),
        # Brackets inside, not around: still wrapped.
        ("Mara [the fisher] is tired.", "[Author's note: Mara [the fisher] is tired.]"),
    ],
)
def test_a_bracketed_note_is_read_as_written_and_any_other_is_wrapped(tokenizer, note, line):
    prompt = assemble(tokenizer, STORY, StoryContext(note=note, note_depth=1), budget=400)
    assert [p.text for p in prompt.parts if p.kind == "note"] == [line + "\n"]


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
    room = 120 - memory_tokens - note_tokens

    prompt = assemble(tokenizer, story, context, budget=120)

    assert [p.kind for p in prompt.parts] == ["memory", "story", "note", "story"]
    assert prompt.parts[0].text == "Mara is a fisher.\n\n" and prompt.parts[0].tokens == memory_tokens
    assert prompt.parts[2].text == "[Author's note: Keep it gentle.]\n" and prompt.parts[2].tokens == note_tokens
    # The newest paragraph is whole, after the note; the cut came off the oldest end, at a
    # multiple of a quarter of the story's room, leaving between three quarters and all of it.
    assert prompt.ids[-len(last_ids) :] == last_ids and prompt.parts[3].text == paragraphs[-1]
    assert prompt.trimmed_tokens % (room // 4) == 0
    assert room - room // 4 < story_tokens - prompt.trimmed_tokens <= room
    assert len(prompt.ids) == memory_tokens + note_tokens + story_tokens - prompt.trimmed_tokens
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


# Writer-sized stories, in words the tiny tokenizer knows (it drops the characters its
# corpus lacks, newlines among them, so texts are compared through the ids).
SUBJECTS = ["The cat", "Whiskers", "Mara", "The old fisherman", "His daughter", "The village", "One boat"]
VERBS = ["walked along", "watched", "waited by", "found", "carried", "sat by", "came to", "looked at"]
OBJECTS = ["the shore", "the boats", "the pier", "the window", "the small house", "the sea", "the lights"]
ENDINGS = ["", " every morning", " until the storm came", " with fish", " and said nothing", " in the rain"]


def sentences(seed):
    rng = random.Random(seed)
    while True:
        yield f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(ENDINGS)}."


def story_of(words, seed=0, paragraph_every=6):
    """A story of about `words` words, a paragraph every few sentences."""
    text, written = "", 0
    for index, sentence in enumerate(sentences(seed)):
        if written >= words:
            return text
        text += sentence if not text else ("\n" if index % paragraph_every == 0 else " ") + sentence
        written += len(sentence.split())


def story_tokens_kept(prompt):
    return sum(p.tokens for p in prompt.parts if p.kind == "story")


def test_a_story_that_fits_is_not_trimmed(tokenizer):
    story = story_of(2000)
    context = StoryContext(memory="Mara is a fisher.")
    needed = count(tokenizer, "Mara is a fisher.\n\n") + count(tokenizer, story)

    prompt = assemble(tokenizer, story, context, budget=needed)

    assert prompt.trimmed_tokens == 0
    assert prompt.text == "Mara is a fisher.\n\n" + story
    assert prompt.ids == tokenizer("Mara is a fisher.\n\n" + story, add_special_tokens=False)["input_ids"]
    # One token less and the oldest quarter of the room goes, not one token.
    room = needed - count(tokenizer, "Mara is a fisher.\n\n") - 1
    assert assemble(tokenizer, story, context, budget=needed - 1).trimmed_tokens == room // 4


def test_adding_sentences_keeps_the_prompts_beginning_until_the_story_outgrows_its_room(tokenizer):
    context = StoryContext(memory="Mara is a fisher. Whiskers is her cat.")
    budget = 800
    room = budget - count(tokenizer, context.memory + "\n\n")
    step = room // 4
    story, more = story_of(3000), sentences(seed=1)
    previous = assemble(tokenizer, story, context, budget)
    assert previous.trimmed_tokens > 0
    tokens_at_start = count(tokenizer, story)

    moves = 0
    for _ in range(300):
        sentence = " " + next(more)
        story += sentence
        prompt = assemble(tokenizer, story, context, budget)
        assert len(prompt.ids) <= budget
        if prompt.trimmed_tokens == previous.trimmed_tokens:
            # The whole previous prompt is the start of this one: only the new sentence is read.
            assert prompt.ids[: len(previous.ids)] == previous.ids
        else:
            # The story outgrew its room: the cut moved on by one step and three quarters are left.
            moves += 1
            assert prompt.trimmed_tokens == previous.trimmed_tokens + step
            assert room - step < story_tokens_kept(prompt) <= room - step + count(tokenizer, sentence)
        previous = prompt
    # The cut moved once for every step's worth of new text, not at every sentence.
    added = count(tokenizer, story) - tokens_at_start
    assert added // step - 1 <= moves <= added // step + 1 and moves <= 300 // 10


def test_with_an_authors_note_the_prompt_up_to_the_note_stays_while_the_writer_adds_text(tokenizer):
    context = StoryContext(memory="Mara is a fisher.", note="Keep it gentle.", note_depth=2)
    budget = 600
    story, more = story_of(4000), sentences(seed=2)
    previous = assemble(tokenizer, story, context, budget)
    assert [p.kind for p in previous.parts] == ["memory", "story", "note", "story"]

    kept_prefixes = moves = 0
    for press in range(200):
        new_paragraph = press % 7 == 6
        story += ("\n" if new_paragraph else " ") + next(more)
        prompt = assemble(tokenizer, story, context, budget)
        assert len(prompt.ids) <= budget
        if prompt.trimmed_tokens != previous.trimmed_tokens:
            moves += 1
        elif new_paragraph:
            # The note moved down a paragraph: everything before where it was is unchanged.
            up_to_old_note = previous.parts[0].tokens + previous.parts[1].tokens
            assert prompt.ids[:up_to_old_note] == previous.ids[:up_to_old_note]
            kept_prefixes += 1
        else:
            # A sentence added to the last paragraph: memory, story, note and the paragraphs
            # after it are all as before.
            assert prompt.ids[: len(previous.ids)] == previous.ids
            kept_prefixes += 1
        previous = prompt
    assert moves <= 200 // 10 and kept_prefixes >= 180


def test_a_cut_that_would_pass_the_note_stops_at_it_when_that_fits(tokenizer):
    context = StoryContext(memory="Mara is a fisher.", note="Keep it gentle.", note_depth=2)
    opening = "The cat slept by the fire."
    after = story_of(600, seed=5, paragraph_every=1000) + "\n" + story_of(600, seed=6, paragraph_every=1000)
    story = opening + "\n" + after
    fixed = count(tokenizer, "Mara is a fisher.\n\n") + count(tokenizer, "[Author's note: Keep it gentle.]\n")
    # Room for the paragraphs after the note and a token more: a quarter of the room would
    # also take the start of the text after the note, while the opening alone is enough.
    budget = fixed + count(tokenizer, after) + 1

    prompt = assemble(tokenizer, story, context, budget)

    assert [p.kind for p in prompt.parts] == ["memory", "note", "story"]
    assert prompt.trimmed_tokens == count(tokenizer, opening + "\n")
    assert prompt.parts[2].text == after and prompt.warnings == []


def test_a_story_without_paragraphs_is_cut_past_the_note_in_steps_with_a_warning(tokenizer):
    context = StoryContext(memory="Mara is a fisher.", note="Keep it gentle.", note_depth=3)
    story = story_of(3000, paragraph_every=10_000)
    budget = 700
    room = budget - count(tokenizer, "Mara is a fisher.\n\n") - count(tokenizer, "[Author's note: Keep it gentle.]\n")

    prompt = assemble(tokenizer, story, context, budget)

    # The note goes before the story's only paragraph, so all of the cut is after it.
    assert [p.kind for p in prompt.parts] == ["memory", "note", "story"]
    assert prompt.trimmed_tokens % (room // 4) == 0
    assert room - room // 4 < prompt.parts[2].tokens <= room
    assert len(prompt.warnings) == 1 and "left out entirely" in prompt.warnings[0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chars=st.integers(min_value=0, max_value=25_000),
    budget=st.integers(min_value=120, max_value=3000),
    depth=st.integers(min_value=0, max_value=8),
    with_note=st.booleans(),
    with_lore=st.booleans(),
)
def test_the_prompt_never_exceeds_its_budget(tokenizer, chars, budget, depth, with_note, with_lore):
    story = LONG_STORY[:chars]
    lore = (LoreEntry(keys=("pier",), text="The pier is old and creaks."),) if with_lore else ()
    context = StoryContext(
        memory="Mara is a fisher.", note="Keep it gentle." if with_note else "", note_depth=depth, lore=lore
    )

    prompt = assemble(tokenizer, story, context, budget)

    assert len(prompt.ids) <= budget
    room = budget - sum(p.tokens for p in prompt.parts if p.kind != "story")
    if prompt.trimmed_tokens:
        # Never more than a step below the room: the cut is not wasteful.
        assert room - room // 4 < story_tokens_kept(prompt) <= room
    else:
        assert story_tokens_kept(prompt) <= room


LONG_STORY = story_of(5000, seed=3)


def test_what_the_model_saw_is_what_its_ids_say_even_when_the_cut_splits_a_character(tokenizer):
    lore = (LoreEntry(keys=("pier",), text="The pier is old and creaks.", name="The pier"),)
    context = StoryContext(memory="Mara is a fisher.", note="Keep it gentle.", note_depth=2, lore=lore)
    story = story_of(3000, seed=4).replace(" the sea", " the sea \U0001f408") + " She came to the pier."
    before, _ = split_for_note(story, 2)
    before_ids = tokenizer(before, add_special_tokens=False)["input_ids"]
    # The budget at which the cut falls inside the four bytes of a cat: decoding the kept
    # ids and encoding that text again would not give the same ids.
    for budget in range(400, 700):
        prompt = assemble(tokenizer, story, context, budget)
        if tokenizer.decode([before_ids[prompt.trimmed_tokens]]) == "\ufffd":
            break
    else:
        pytest.fail("no budget cuts inside a character")

    assert [p.kind for p in prompt.parts] == ["memory", "lore", "story", "note", "story"]
    assert len(prompt.ids) == sum(p.tokens for p in prompt.parts)
    start = 0
    for part in prompt.parts:
        ids = prompt.ids[start : start + part.tokens]
        start += part.tokens
        if part.label == "Story":
            # The kept story is the slice of the story's own ids, and its text is what they decode to.
            assert ids == before_ids[prompt.trimmed_tokens :]
            assert part.text == tokenizer.decode(ids) and part.text.startswith("\ufffd")
        else:
            assert ids == tokenizer(part.text, add_special_tokens=False)["input_ids"]
