"""The model's choices in a real browser: hovering a word it wrote shows the candidates it
weighed; clicking one rewrites the story from there, starting with that candidate."""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from generation.models import Generation
from storyteller.stories.models import Story
from storyteller.stories.services import draft_save
from tests.e2e.conftest import OPENING, expect_story_text, open_editor, outside_the_event_loop, story_text

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# A page position on the left part of the character at an index of the story (the caret
# under it is before that character).
POINT = """at => {
    const quill = Quill.find(document.getElementById("story"));
    const box = quill.getBounds(at, 1), root = quill.root.getBoundingClientRect();
    return {x: root.left + box.left + box.width / 4, y: root.top + box.top + box.height / 2};
}"""


MENU = "The model's choices"


def generate(page):
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)
    return outside_the_event_loop(lambda: Generation.objects.order_by("-pk").first())


def a_token(generation, at: int, step: int = 2):
    """(token, its index in the story, the page point over it): the first token from
    `step` on that added text and has a candidate other than itself."""
    for index, token in enumerate(generation.choices):
        start = at + sum(len(c["text"]) for c in generation.choices[:index])
        if index >= step and token["text"] and any(c[0] != token["id"] for c in token["top"]):
            return token, start
    raise AssertionError(f"no token to hover in {generation.choices}")


def hover(page, index: int, text: str):
    point = page.evaluate(POINT, index + len(text) // 2)
    page.mouse.move(point["x"], point["y"])


def resize(page, width: int, height: int):
    """Changes the window's size, and waits for the page to have seen it (the resize event
    comes with a later frame)."""
    page.set_viewport_size({"width": width, "height": height})
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


def expect_candidates(page, token):
    menu = page.get_by_role("menu", name=MENU)
    expect(menu).to_be_visible()
    items = menu.get_by_role("menuitem")
    # The five it weighed most, then what it wrote when that was none of them.
    weighed = [c[0] for c in token["top"]]
    expected = weighed if token["id"] in weighed else [*weighed, token["id"]]
    expect(items).to_have_count(len(expected))
    assert [int(i) for i in items.evaluate_all("bs => bs.map(b => b.dataset.token)")] == expected
    assert re.search(r"\d+\.\d%", items.first.text_content())
    if token["id"] not in weighed:
        expect(items.last).to_have_text(re.compile(r"\(written\)$"))
    return menu


def record_choices(story, **settings):
    settings = {"record_choices": True, "max_new_tokens": 8, "seed": 3, "temperature": 1.0, **settings}
    outside_the_event_loop(lambda: draft_save(story=story, base_revision=1, settings=settings))


def test_hovering_a_model_word_shows_its_candidates_and_clicking_one_rewrites_from_there(
    writer, new_page, context, live_site
):
    story = writer[0]
    record_choices(story)
    page = open_editor(new_page, context, live_site, story)
    first = generate(page)
    assert first.choices and first.output and first.params["seed"] == 3  # the story's seed is kept

    token, start = a_token(first, len(OPENING))
    expect(page.get_by_role("menu", name=MENU)).to_be_hidden()
    expect(page.locator("#story[data-choices=ready]")).to_have_count(1)  # fetched after done
    # The words that have candidates are marked: the continuation's passage, and its text.
    marked = page.evaluate("() => [...CSS.highlights.get('choices')].map((range) => range.toString())")
    assert marked == [first.output]
    # A window just tall enough to show the word above the toolbar docked at its bottom:
    # the pop-up opens above the word rather than over the toolbar.
    word_bottom = page.evaluate(POINT, start)["y"] + 12
    dock = page.locator(".dock").bounding_box()
    resize(page, 1280, int(word_bottom + dock["height"] + 16))
    hover(page, start, token["text"])
    menu = expect_candidates(page, token)
    box, dock = menu.bounding_box(), page.locator(".dock").bounding_box()
    title_bar = page.locator(".editor-top").bounding_box()
    assert title_bar["y"] + title_bar["height"] <= box["y"] and box["y"] + box["height"] <= dock["y"], (box, dock)
    # The window changes under the open pop-up: it closes, and opens again where the word is now.
    resize(page, 1280, 900)
    expect(menu).to_be_hidden()
    hover(page, start, token["text"])
    menu = expect_candidates(page, token)

    other = next(c for c in token["top"] if c[0] != token["id"])
    menu.locator(f"[data-token='{other[0]}']").click()
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)
    second = outside_the_event_loop(lambda: Generation.objects.order_by("-pk").first())
    assert second.pk != first.pk and second.params["first_token"] == other[0]
    assert second.output.startswith(other[1]) and second.choices[0]["id"] == other[0]
    kept = OPENING + first.output[: start - len(OPENING)]
    expect_story_text(page, kept + second.output)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert outside_the_event_loop(lambda: Story.objects.get(pk=story.pk).text) == story_text(page)


def test_an_earlier_continuation_keeps_its_candidates_after_a_reload_until_the_writer_edits_it(
    writer, new_page, context, live_site
):
    story = writer[0]
    record_choices(story)
    page = open_editor(new_page, context, live_site, story)
    first = generate(page)
    second = generate(page)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert story_text(page) == OPENING + first.output + second.output

    page.reload()
    expect(page.locator("#story[data-choices=ready]")).to_have_count(1)
    token, start = a_token(first, len(OPENING))
    hover(page, start, token["text"])
    menu = expect_candidates(page, token)

    # Rewriting the first continuation replaces the rest of it; the second stays after it.
    other = next(c for c in token["top"] if c[0] != token["id"])
    menu.locator(f"[data-token='{other[0]}']").click()
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)
    third = outside_the_event_loop(lambda: Generation.objects.order_by("-pk").first())
    assert third.params["first_token"] == other[0]
    kept = OPENING + first.output[: start - len(OPENING)]
    expect_story_text(page, kept + third.output + second.output)

    # Writing before the continuations moves them, and their candidates with them.
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+Home")
    page.keyboard.type("So: ")
    token, start = a_token(third, len(kept) + 4, step=1)
    hover(page, start, token["text"])
    expect_candidates(page, token)

    # An edit inside the model's passage (the continuations side by side are one) makes
    # it the writer's: no candidates there any more.
    page.keyboard.press("Control+End")
    page.keyboard.press("Backspace")
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    page.mouse.move(0, 0)
    hover(page, start, token["text"])
    expect(page.get_by_role("menu", name=MENU)).to_be_hidden()
    expect(page.locator("#story[data-choices=ready]")).to_have_count(0)


def test_a_continuation_that_went_on_over_a_line_break_has_candidates_on_both_sides_of_it(
    writer, new_page, context, live_site
):
    # A continuation as the worker records it, with a paragraph break in the middle: the
    # editor marks the model's words but never a line's end, so its passage comes in two.
    story = writer[0]
    pieces = [" The", " cat", " slept", ".", "\n\n", "In", " the", " morning", " she", " woke", "."]
    output = "".join(pieces)
    recorded = [
        {"id": 100 + n, "text": piece, "top": [[100 + n, piece, 0.6], [200 + n, " dog", 0.3]]}
        for n, piece in enumerate(pieces)
    ]
    # " morning" was sampled from outside the most likely: the pop-up still says it was written.
    recorded[7]["top"] = [[207, " dog", 0.3], [307, " night", 0.2]]
    start = len(OPENING)
    line_break = start + output.index("\n\n")

    def write():
        Generation.objects.create(
            story=story,
            user=story.owner,
            seed=1,
            status="finished",
            finish_reason="length",
            output=output,
            choices=recorded,
            finished_at=timezone.now(),
        )
        draft_save(
            story=story,
            base_revision=1,
            text=OPENING + output,
            model_spans=[[start, line_break], [line_break + 2, start + len(output)]],
            settings={"record_choices": True},
        )

    outside_the_event_loop(write)
    page = open_editor(new_page, context, live_site, story)
    expect(page.locator("#story[data-choices=ready]")).to_have_count(1)
    marked = page.evaluate("() => [...CSS.highlights.get('choices')].map((range) => range.toString())")
    assert marked == [output.replace("\n", "")]  # the text of a range has no line ends
    for index in (2, 7):  # "slept", before the break, and "morning", after it
        token = recorded[index]
        hover(page, start + len("".join(pieces[:index])), token["text"])
        expect_candidates(page, token)
        page.mouse.move(1, 1)
