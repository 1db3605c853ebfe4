"""Keyboard and reading comfort in a real browser: shortcuts and their help, Undo and Redo
only when there is something to undo, focus mode, a dark page when the system asks for
one, a phone's width, what an empty story's Generate says, the controls in reach on a long
story, and a long story reopened where the writer was."""

import json
import re

import pytest
from playwright.sync_api import expect

from generation.management.prose import join, story_sentences
from generation.models import Generation
from storyteller.stories.models import Story
from storyteller.stories.services import draft_save, story_create
from tests.e2e.conftest import (
    OPENING,
    generate_and_wait,
    open_at_the_end,
    open_editor,
    outside_the_event_loop,
    story_text,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

db = outside_the_event_loop
PARAGRAPH = "The rain fell on the old town, and the lamps of the harbour burned low. " * 8


def test_the_shortcuts_generate_retry_and_browse_and_are_listed(writer, new_page, context, live_site):
    story = writer[0]
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=12)
    page.keyboard.press("Control+Enter")
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)
    first = story_text(page)
    assert first != OPENING

    # Alt+R is Retry (Ctrl+R stays the browser's reload).
    page.keyboard.press("Alt+r")
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)
    expect(page.locator("#alt-position")).to_have_text("2 of 2")
    assert db(Generation.objects.count) == 2
    second = story_text(page)
    page.keyboard.press("Alt+BracketLeft")
    expect(page.locator("#alt-position")).to_have_text("1 of 2")
    assert story_text(page) == first
    page.keyboard.press("Alt+BracketRight")
    expect(page.locator("#alt-position")).to_have_text("2 of 2")
    assert story_text(page) == second

    # "?" outside the story lists them; Escape closes the list and stops nothing.
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Alt+R")
    expect(dialog).to_contain_text("Ctrl+Enter")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    # "?" typed in the story is a question mark.
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    page.keyboard.type(" Why?")
    expect(dialog).to_be_hidden()
    assert story_text(page).endswith(" Why?")


def test_undo_and_redo_are_offered_only_when_there_is_something_to_undo(writer, new_page, context, live_site):
    page = open_editor(new_page, context, live_site, writer[0])
    undo, redo = page.get_by_role("button", name="Undo"), page.get_by_role("button", name="Redo")
    expect(undo).to_be_disabled()
    expect(redo).to_be_disabled()
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    page.keyboard.type(" More.")
    expect(undo).to_be_enabled()
    expect(redo).to_be_disabled()
    undo.click()
    expect(redo).to_be_enabled()
    expect(undo).to_be_disabled()
    assert story_text(page) == OPENING
    redo.click()
    expect(redo).to_be_disabled()
    assert story_text(page) == OPENING + " More."


def test_focus_mode_leaves_the_story_and_its_toolbar_and_is_remembered(writer, new_page, context, live_site):
    page = open_editor(new_page, context, live_site, writer[0])
    focus = page.get_by_role("button", name="Focus")
    page.keyboard.press("Alt+f")
    expect(focus).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("toolbar", name="Panels")).to_be_hidden()
    expect(page.get_by_role("textbox", name="Story")).to_be_visible()
    expect(page.get_by_role("button", name="Generate")).to_be_visible()
    page.reload()
    expect(page.get_by_role("toolbar", name="Panels")).to_be_hidden()
    page.get_by_role("button", name="Focus").click()
    expect(page.get_by_role("toolbar", name="Panels")).to_be_visible()


def test_the_page_is_dark_when_the_system_asks(writer, browser, live_site):
    context = browser.new_context(color_scheme="dark")
    try:
        context.add_cookies([{"name": "sessionid", "value": writer[1], "url": live_site}])
        page = context.new_page()
        page.goto(f"{live_site}/stories/{writer[0].id}/")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        editor = page.evaluate("getComputedStyle(document.querySelector('.story-editor')).backgroundColor")
        ink = page.evaluate("getComputedStyle(document.querySelector('.ql-editor')).color")
    finally:
        context.close()

    def brightness(colour):
        red, green, blue = (int(v) for v in re.findall(r"\d+", colour)[:3])
        return (red + green + blue) / 3

    assert brightness(background) < 60 and brightness(editor) < 60 and brightness(ink) > 180


@pytest.mark.parametrize("where", ["editor", "library", "trash"])
def test_a_phone_sees_no_page_wider_than_its_screen(where, alice, writer, new_page, context, live_site):
    story = db(lambda: story_create(owner=alice, title="A long title " * 8, text="\n\n".join([PARAGRAPH] * 20)))
    page = new_page(context)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(
        f"{live_site}/stories/{story.id}/"
        if where == "editor"
        else f"{live_site}/stories/{'trash/' if where == 'trash' else ''}"
    )
    if where == "editor":
        page.get_by_role("button", name="Settings").click()
        page.get_by_text("More samplers").click()
    page.wait_for_load_state("networkidle")
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], widths
    if where == "editor":
        for name in ("Generate", "Stop", "Retry", "Undo"):
            box = page.get_by_role("button", name=name).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (name, box)


def test_generate_on_an_empty_story_says_what_helps_and_offers_an_opening(alice, writer, new_page, context, live_site):
    story = db(lambda: story_create(owner=alice, title="Blank", text=""))
    page = open_editor(new_page, context, live_site, story)
    page.get_by_role("button", name="Generate").click()
    hint = page.locator("#empty-hint")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("give it a sentence or two first")
    assert db(Generation.objects.count) == 0
    page.get_by_role("button", name="Start from an example").click()
    expect(hint).to_be_hidden()
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert len(db(lambda: Story.objects.get(pk=story.pk).text)) > 40


def test_the_context_bar_shows_how_the_window_is_spent_and_warns_what_is_left_out(
    alice, writer, new_page, context, live_site
):
    story = db(lambda: story_create(owner=alice, title="Harbour", text=PARAGRAPH.strip()))
    page = open_editor(new_page, context, live_site, story)
    bar = page.get_by_role("region", name="Context")
    expect(bar).to_be_visible(timeout=15_000)
    expect(page.locator("#context-legend")).to_contain_text("Story read")
    expect(page.locator("#context-legend")).to_contain_text("room for the continuation")
    expect(page.locator("#context-warning")).to_be_hidden()
    expect(page.locator("#word-count")).to_have_text(re.compile(r"^\d+ words · \d[\d,]* tokens$"))
    first = page.locator("#word-count").text_content()

    # The writer pastes much more: the bar says what the model will not read, as they type.
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    page.keyboard.insert_text("\n\n" + "\n\n".join([PARAGRAPH] * 6))
    expect(page.locator("#context-warning")).to_contain_text("are left out", timeout=15_000)
    expect(page.locator("#context-legend")).to_contain_text("left out")
    assert page.locator("#word-count").text_content() != first
    # Each part of the window is drawn, and the room for the continuation after them.
    expect(bar.locator(".context-story")).to_have_count(1)
    expect(bar.locator(".context-room")).to_have_count(1)

    # After a continuation, what the model already read and kept is shown too.
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gen-state")).to_have_text(re.compile("Done|Stopped"), timeout=60_000)
    expect(page.locator("#context-legend")).to_contain_text("already read and kept", timeout=15_000)


def test_on_a_long_story_the_title_save_state_panels_and_toolbar_stay_in_reach(writer, new_page, context, live_site):
    story = writer[0]
    text = join(story_sentences(9, 200))
    outside_the_event_loop(lambda: draft_save(story=story, base_revision=1, text=text))
    page = open_editor(new_page, context, live_site, story)
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    page.mouse.wheel(0, 100_000)
    page.wait_for_function("() => window.scrollY > 2000")
    page.get_by_role("button", name="Tree").click()

    height = page.viewport_size["height"]

    def in_sight(locator):
        box = locator.bounding_box()
        return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height

    for name, locator in (
        ("title", page.get_by_role("textbox", name="Title")),
        ("save state", page.locator("#save-state")),
        ("panels", page.get_by_role("toolbar", name="Panels")),
        ("Tree panel", page.get_by_role("region", name="Tree panel")),
        ("Generate", page.get_by_role("button", name="Generate")),
        ("Stop", page.get_by_role("button", name="Stop")),
    ):
        assert in_sight(locator), name


def shown_above_the_toolbar(page, locator, edge: str) -> bool:
    """Whether the `edge` ("top" or "bottom") of what `locator` finds is on screen, above
    the toolbar that stays at the bottom of the window."""
    box = locator.bounding_box()
    y = box["y"] if edge == "top" else box["y"] + box["height"]
    return 0 <= y <= page.locator(".dock").bounding_box()["y"]


def test_a_long_story_opens_where_the_writer_last_worked_in_it_or_at_its_end(writer, new_page, context, live_site):
    story = writer[0]
    text = join(story_sentences(9, 200))
    db(lambda: draft_save(story=story, base_revision=1, text=text, settings={"max_new_tokens": 40}))
    place_key = f"storyteller:story:{story.id}:place"

    def reopen():
        page = open_editor(new_page, context, live_site, story)
        paragraphs = page.get_by_role("textbox", name="Story").locator("p").filter(has_text=re.compile(r"\w"))
        return page, paragraphs.first, paragraphs.nth(paragraphs.count() // 2), paragraphs.last

    # Where a continuation goes: the end, above the toolbar, and not the first line.
    page, first, middle, end = reopen()
    page.wait_for_function("() => window.scrollY > 2000")
    assert shown_above_the_toolbar(page, end, "bottom") and not shown_above_the_toolbar(page, first, "top")

    # The writer goes back to a paragraph in the middle to revise it, and comes back later.
    middle.click()
    clicked = middle.text_content()
    page.wait_for_function(f"() => localStorage.getItem('{place_key}') !== null")
    place = int(page.evaluate(f"() => localStorage.getItem('{place_key}')"))
    assert text.index(clicked) <= place <= text.index(clicked) + len(clicked)
    page.close()
    page, first, middle, end = reopen()
    page.wait_for_function("() => window.scrollY > 1000")
    assert shown_above_the_toolbar(page, middle, "top") or shown_above_the_toolbar(page, middle, "bottom")
    assert not shown_above_the_toolbar(page, first, "top") and not shown_above_the_toolbar(page, end, "bottom")

    # A continuation is where the writer worked last: the story reopens at its new words.
    page.get_by_role("button", name="Generate").click()  # with no cursor placed: at the end
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    written = db(lambda: Generation.objects.get()).output
    assert written.strip() and db(lambda: Story.objects.get(pk=story.pk)).text.endswith(written)
    page.close()
    page, first, middle, end = reopen()
    page.wait_for_function("() => window.scrollY > 2000")
    assert shown_above_the_toolbar(page, end, "bottom")


PASTE = """(text) => {
    const data = new DataTransfer();
    data.setData("text/plain", text);
    const paste = new ClipboardEvent("paste", {clipboardData: data, bubbles: true});
    document.querySelector(".ql-editor").dispatchEvent(paste);
}"""


def test_a_story_pasted_in_reopens_at_the_end_of_what_was_pasted(writer, new_page, context, live_site):
    story = writer[0]
    page = open_at_the_end(new_page, context, live_site, story)
    pasted = "\n\n" + join(story_sentences(4, 200))
    page.evaluate(PASTE, pasted)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert db(lambda: Story.objects.get(pk=story.pk)).text == OPENING + pasted
    page.close()

    page = open_editor(new_page, context, live_site, story)
    paragraphs = page.get_by_role("textbox", name="Story").locator("p").filter(has_text=re.compile(r"\w"))
    page.wait_for_function("() => window.scrollY > 2000")
    assert shown_above_the_toolbar(page, paragraphs.last, "bottom")
    assert not shown_above_the_toolbar(page, paragraphs.first, "top")


def test_a_phone_reaches_the_panels_from_deep_in_a_long_story_and_comes_back_to_its_place(
    writer, new_page, context, live_site
):
    story = writer[0]
    db(lambda: draft_save(story=story, base_revision=1, text=join(story_sentences(6, 200))))
    page = new_page(context)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_site}/stories/{story.id}/")
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()
    page.wait_for_function("() => window.scrollY > 5000")  # at the story's end
    last = page.get_by_role("textbox", name="Story").locator("p").last
    reading_at = last.bounding_box()["y"]

    panels = page.get_by_role("button", name="Panels", exact=True)
    expect(panels).to_be_in_viewport()
    panels.click()
    # The first tab takes the focus (the open panel's, when one is open).
    expect(page.get_by_role("button", name="Memory", exact=True)).to_be_focused()
    settings_tab = page.get_by_role("button", name="Settings")
    expect(settings_tab).to_be_in_viewport()
    settings_tab.click()
    page.get_by_label("Length (tokens)").fill("33")
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert db(lambda: Story.objects.get(pk=story.pk).settings["max_new_tokens"]) == 33
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], widths

    page.get_by_role("button", name="Back to the story").click()
    expect(panels).to_be_focused()
    # Where the writer was reading, as it was (the page above it may have grown meanwhile,
    # as the context bar came: the browser keeps the view where it was).
    assert abs(last.bounding_box()["y"] - reading_at) <= 2
    expect(page.get_by_role("button", name="Generate")).to_be_in_viewport()

    # Escape closes them too.
    panels.click()
    expect(settings_tab).to_be_focused()
    expect(settings_tab).to_be_in_viewport()
    page.keyboard.press("Escape")
    expect(panels).to_be_focused()
    expect(page.get_by_role("button", name="Back to the story")).to_be_hidden()

    # From a phone to a desk, the top of the editor wraps rather than overflows, with the
    # longest save state in it.
    page.evaluate("() => { document.getElementById('save-state').textContent = 'Saved; settings need fixing'; }")
    for width in (390, 600, 800, 1000):
        page.set_viewport_size({"width": width, "height": 844})
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], (width, widths)


def test_a_continuations_tokens_join_the_count_as_it_ends_and_a_retrys_replace_the_ones_it_replaced(
    writer, new_page, context, live_site
):
    story = writer[0]
    holding = False
    held = []

    def hold_context_counts(socket):
        server = socket.connect_to_server()

        def to_server(message):
            if holding and json.loads(message)["type"] == "context":
                held.append(message)
            else:
                server.send(message)

        socket.on_message(to_server)

    context.route_web_socket(re.compile("/ws/"), hold_context_counts)
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=30)
    count = page.locator("#word-count")
    expect(count).to_have_text(re.compile(r" · [\d,]+ tokens$"))
    before = int(re.search(r"([\d,]+) tokens$", count.text_content()).group(1).replace(",", ""))

    # The worker's count of the whole text is held back: what the page shows at Done comes
    # from the generation's own count of its words.
    holding = True
    generate_and_wait(page)
    written = db(Generation.objects.get).new_tokens
    assert written > 0
    expect(count).to_have_text(re.compile(rf" · {before + written:,} tokens$"))

    # A Retry's in place of the version it replaced (a shorter one here), and so do the
    # arrows'.
    page.get_by_role("button", name="Settings").click()
    page.get_by_label("Length (tokens)").fill("12")
    page.get_by_role("button", name="Retry", exact=True).click()
    expect(page.locator("#alt-position")).to_have_text("2 of 2", timeout=60_000)
    expect(page.locator("#gen-state")).to_have_text("Done")
    retried = db(lambda: Generation.objects.latest("pk")).new_tokens
    assert 0 < retried < written
    expect(count).to_have_text(re.compile(rf" · {before + retried:,} tokens$"))
    page.get_by_role("button", name="Previous continuation", exact=True).click()
    expect(count).to_have_text(re.compile(rf" · {before + written:,} tokens$"))
    page.get_by_role("button", name="Next continuation", exact=True).click()
    expect(count).to_have_text(re.compile(rf" · {before + retried:,} tokens$"))
    page.wait_for_timeout(1500)
    assert held, "the page asked for no count of the text after the generations"
