"""What a writer must never lose, in a real browser: the story's text behind a wrong
setting, and the model's colouring across undo and reloads. What must survive while the
model streams is in test_never_lose_a_word_while_it_streams.py."""

import re

import pytest
from playwright.sync_api import expect

from generation.models import Generation
from storyteller.stories.models import Story
from storyteller.stories.services import draft_save, story_create
from tests.e2e.conftest import (
    OPENING,
    expect_story_text,
    generate_and_wait,
    leaving_asks_first,
    open_at_the_end,
    open_editor,
    outside_the_event_loop,
    story_text,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

db = outside_the_event_loop


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_a_wrong_setting_is_marked_where_it_is_typed_and_the_story_still_saves(writer, new_page, context, live_site):
    story = writer[0]
    db(lambda: draft_save(story=story, base_revision=1, settings={"temperature": 0.7, "max_new_tokens": 12}))
    page = open_editor(new_page, context, live_site, story)
    page.get_by_role("button", name="Settings").click()

    page.get_by_label("Temperature").fill("")
    page.get_by_label("Length (tokens)").fill("5000")

    expect(page.locator("#temperature-problem")).to_have_text(re.compile(r"^Temperature must be a number from 0"))
    expect(page.locator("#max-new-tokens-problem")).to_have_text(
        re.compile(r"^Length \(tokens\) must be a whole number from 1 to \d+\.$")
    )
    expect(page.get_by_label("Temperature")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#settings-problems")).to_contain_text("2 settings need fixing")
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    page.keyboard.type(" She went home.")
    # Saved, and the save state says what was not.
    expect(page.locator("#save-state")).to_have_text("Saved; settings need fixing", timeout=15_000)
    saved = db(lambda: Story.objects.get(pk=story.pk))
    assert saved.text == OPENING + " She went home."
    assert (saved.settings["temperature"], saved.settings["max_new_tokens"]) == (0.7, 12)

    # Generate waits for them, and says why.
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gen-state")).to_contain_text("Fix the settings first: Length (tokens) must be")
    expect(page.locator("#gen-state")).to_contain_text("Temperature must be")
    assert db(Generation.objects.count) == 0

    # A value only the server refuses is marked too, and the text still saves without it.
    page.evaluate("() => document.getElementById('repetition-penalty').setAttribute('min', '0')")
    page.get_by_label("Repetition penalty").fill("0.1")
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    page.keyboard.type(" Then she slept.")
    expect(page.locator("#repetition-penalty-problem")).to_contain_text("Repetition penalty: ")
    expect(page.locator("#save-state")).to_have_text("Saved; settings need fixing", timeout=15_000)
    assert db(lambda: Story.objects.get(pk=story.pk).text) == OPENING + " She went home. Then she slept."

    # What was typed wrong is kept only in its field: leaving the page asks first.
    assert leaving_asks_first(page)

    page.get_by_label("Temperature").fill("0.9")
    page.get_by_label("Length (tokens)").fill("20")
    page.get_by_label("Repetition penalty").fill("1.1")
    expect(page.locator("#settings-problems")).to_be_hidden()
    expect(page.locator("#temperature-problem")).to_be_hidden()
    expect(page.locator("#gen-state")).not_to_contain_text("Fix the settings first")
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    settings = db(lambda: Story.objects.get(pk=story.pk).settings)
    assert (settings["temperature"], settings["max_new_tokens"], settings["repetition_penalty"]) == (0.9, 20, 1.1)
    assert not leaving_asks_first(page)


def test_undo_and_redo_bring_back_the_models_words_in_its_colour(writer, new_page, context, live_site):
    story = writer[0]
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=16)
    generate_and_wait(page)
    first = story_text(page)[len(OPENING) :]
    expect(page.locator("#window-note")).to_be_hidden()  # the model read all of this short story
    page.get_by_role("button", name="Retry").click()
    expect(page.locator("#alt-position")).to_have_text("2 of 2", timeout=60_000)
    expect(page.locator("#gen-state")).to_have_text("Done")
    second = story_text(page)[len(OPENING) :]
    assert first and second and first != second

    page.get_by_role("button", name="Undo").click()

    expect_story_text(page, OPENING + first)
    expect(page.locator(".model-text")).to_have_text(first)
    # Back on the first try: the arrows show it, with the retry after it.
    expect(page.locator("#alt-position")).to_have_text("1 of 2")
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert db(lambda: Story.objects.get(pk=story.pk).model_spans) == [[utf16(OPENING), utf16(OPENING + first)]]

    page.keyboard.press("Control+Shift+Z")  # redo, from the keyboard
    expect_story_text(page, OPENING + second)
    expect(page.locator(".model-text")).to_have_text(second)


def test_the_models_words_keep_their_colour_after_the_writer_types_on_and_reloads(writer, new_page, context, live_site):
    story = writer[0]
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=16)
    generate_and_wait(page)
    written = story_text(page)[len(OPENING) :]
    page.keyboard.press("Control+End")
    page.keyboard.type(" Mine.")
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert db(lambda: Story.objects.get(pk=story.pk).model_spans) == [[utf16(OPENING), utf16(OPENING + written)]]

    page.reload()

    expect(page.locator(".model-text")).to_have_text(written)


def test_undoing_a_history_restore_brings_back_the_models_colour(writer, new_page, context, live_site):
    story = writer[0]
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=16)
    generate_and_wait(page)
    written = story_text(page)[len(OPENING) :]
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    page.get_by_role("button", name="History").click()
    page.get_by_role("button", name="Revision 1", exact=True).click()
    page.get_by_role("button", name="Restore this version").click()
    expect_story_text(page, OPENING)

    page.get_by_role("button", name="Undo").click()

    expect_story_text(page, OPENING + written)
    expect(page.locator(".model-text")).to_have_text(written)


def test_generate_and_stop_stay_in_sight_on_a_long_story(alice, writer, new_page, context, live_site):
    paragraph = "The rain fell on the old town, and the lamps of the harbour burned low. " * 8
    story = db(lambda: story_create(owner=alice, title="Long", text="\n\n".join([paragraph] * 60)))
    page = open_editor(new_page, context, live_site, story)
    page.set_viewport_size({"width": 1280, "height": 800})

    for where in ("Control+Home", "Control+End"):
        page.get_by_role("textbox", name="Story").focus()
        page.keyboard.press(where)
        expect(page.get_by_role("button", name="Generate")).to_be_in_viewport()
        expect(page.get_by_role("button", name="Stop")).to_be_in_viewport()
