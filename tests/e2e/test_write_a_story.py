"""A new writer in a real browser: Debian's Chromium driven by Playwright."""

import pytest
from playwright.sync_api import expect

from generation.models import Generation
from storyteller.stories.models import Story
from tests.e2e.conftest import OPENING, a_seed_that_writes_to_the_full_length, expect_story_text, outside_the_event_loop
from tests.harness import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_writer_signs_up_generates_and_finds_the_story_after_a_reload(page, live_site):
    page.goto(f"{live_site}/accounts/signup/")
    page.get_by_label("Username").fill("dana")
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(f"{live_site}/stories/")

    page.get_by_role("textbox", name="Title:").fill("Whiskers")
    page.get_by_label("Opening").fill(OPENING)
    page.get_by_role("button", name="Start writing").click()
    story = page.get_by_role("textbox", name="Story")
    expect_story_text(page, OPENING)
    seed, expected = outside_the_event_loop(a_seed_that_writes_to_the_full_length)
    outside_the_event_loop(lambda: Story.objects.update(settings={"seed": seed}))

    # Watch the editor's text as the words arrive, to see that they stream in pieces.
    page.evaluate(
        """() => {
            const quill = Quill.find(document.getElementById("story"));
            window.lengths = [];
            quill.on("text-change", () => window.lengths.push(quill.getLength()));
        }"""
    )
    story.focus()
    page.keyboard.press("Control+End")
    # Enabled once the story socket is open.
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)

    generation = outside_the_event_loop(Generation.objects.get)
    assert (generation.finish_reason, generation.output) == ("length", expected)
    expect_story_text(page, OPENING + expected)
    assert len(set(page.evaluate("window.lengths"))) >= 2, "the words should arrive in more than one piece"

    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    page.reload()
    expect_story_text(page, OPENING + expected)
