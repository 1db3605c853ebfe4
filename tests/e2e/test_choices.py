"""The model's choices in a real browser: hovering a word it wrote shows the candidates it
weighed; clicking one rewrites the story from there, starting with that candidate."""

import re

import pytest
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


def test_hovering_a_model_word_shows_its_candidates_and_clicking_one_rewrites_from_there(
    writer, new_page, context, live_site
):
    story = writer[0]
    settings = {"record_choices": True, "max_new_tokens": 8, "seed": 3, "temperature": 1.0}
    outside_the_event_loop(lambda: draft_save(story=story, base_revision=1, settings=settings))
    page = open_editor(new_page, context, live_site, story)
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)
    first = outside_the_event_loop(Generation.objects.get)
    assert first.choices and first.output

    # The third token of the continuation, and its candidates.
    token = first.choices[2]
    start = len(OPENING) + sum(len(c["text"]) for c in first.choices[:2])
    point = page.evaluate(POINT, start + len(token["text"]) // 2)
    menu = page.get_by_role("menu", name="The model's choices")
    expect(menu).to_be_hidden()
    expect(page.locator("#story[data-choices=ready]")).to_have_count(1)  # fetched after done
    page.mouse.move(point["x"], point["y"])
    expect(menu).to_be_visible()
    items = menu.get_by_role("menuitem")
    expect(items).to_have_count(len(token["top"]))
    assert [int(i) for i in items.evaluate_all("bs => bs.map(b => b.dataset.token)")] == [c[0] for c in token["top"]]
    assert re.search(r"\d+\.\d%", items.first.text_content())

    other = next(c for c in token["top"] if c[0] != token["id"])
    menu.locator(f"[data-token='{other[0]}']").click()
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)
    second = outside_the_event_loop(lambda: Generation.objects.order_by("-pk").first())
    assert second.pk != first.pk and second.params["first_token"] == other[0]
    assert second.output.startswith(other[1]) and second.choices[0]["id"] == other[0]
    kept = OPENING + "".join(c["text"] for c in first.choices[:2])
    expect_story_text(page, kept + second.output)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert outside_the_event_loop(lambda: Story.objects.get(pk=story.pk).text) == story_text(page)
