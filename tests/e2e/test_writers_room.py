"""The writer's room in a real browser: memory and lore, history, sharing, export and
import, two tabs, offline, stop."""

import json
import re
import time

import pytest
from playwright.sync_api import expect

from generation.models import Generation
from storyteller.stories.models import Story
from storyteller.stories.services import draft_save
from tests.e2e.conftest import (
    OPENING,
    a_seed_that_writes_to_the_full_length,
    expect_story_text,
    generate_and_wait,
    on_screen,
    open_at_the_end,
    open_editor,
    outside_the_event_loop,
    story_text,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Long enough (and run to its end by a chosen seed) that Stop or a closing tab comes first.
LONG = 480


def db(query):
    return outside_the_event_loop(query)


def test_memory_and_lore_reach_the_model_and_the_writer_sees_what_it_read(writer, new_page, context, live_site):
    story = writer[0]
    page = open_editor(new_page, context, live_site, story)

    page.get_by_role("button", name="Memory", exact=True).click()
    page.get_by_label("Memory text").fill("Whiskers is a grey cat who loves the sea.")
    page.get_by_role("button", name="Lorebook").click()
    page.get_by_role("button", name="Add entry").click()
    page.get_by_label("Keywords").fill("pier")
    page.get_by_label("Lore text").fill("The pier is old and creaks.")
    page.get_by_label("Lore text").blur()
    expect(page.locator("#lore-state")).to_have_text("Lore saved")
    editor = page.get_by_role("textbox", name="Story")
    editor.focus()
    page.keyboard.press("Control+End")
    page.keyboard.type(" She sat on the pier.")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gen-state")).to_have_text(re.compile("Done|Stopped"), timeout=60_000)

    page.get_by_role("button", name="What the model saw").click()
    panel = page.get_by_role("region", name="What the model saw panel")
    expect(panel).to_contain_text("Memory:")
    expect(panel).to_contain_text("Lore: pier")
    expect(panel).to_contain_text("The pier is old and creaks.")
    generation = db(Generation.objects.get)
    assert [part["kind"] for part in generation.context["parts"]] == ["memory", "lore", "story"]
    assert db(lambda: Story.objects.get(pk=story.pk).memory) == "Whiskers is a grey cat who loves the sea."


def test_history_shows_each_version_and_restores_one(writer, new_page, context, live_site):
    story = writer[0]
    page = open_editor(new_page, context, live_site, story)
    editor = page.get_by_role("textbox", name="Story")
    editor.fill("A different beginning.")
    expect(page.locator("#save-state")).to_have_text("Saved")

    page.get_by_role("button", name="History").click()
    # Each revision says what its save changed; the newest is the text now.
    expect(page.locator("#history-list li").first).to_contain_text("now")
    expect(page.locator("#history-list li").last).to_contain_text("the oldest kept")
    words = len(OPENING.split()) - 3
    expect(page.locator("#history-list li").first).to_contain_text(f"−{words} words")
    page.get_by_role("button", name="Revision 1").click()
    expect(page.locator("#history-preview-text")).to_have_text(OPENING)
    page.get_by_role("button", name="Compare with current").click()
    expect(page.locator("#history-diff del")).to_have_text(["A different beginning."])
    expect(page.locator("#history-diff ins")).to_have_text([OPENING])
    # The comparison left open follows the text as the writer goes on typing.
    editor.focus()
    page.keyboard.press("Control+End")
    page.keyboard.type(" Then rain.")
    expect(page.locator("#history-diff del")).to_have_text(["A different beginning. Then rain."])
    expect(page.locator("#save-state")).to_have_text("Saved")
    page.get_by_role("button", name="Restore this version").click()

    expect_story_text(page, OPENING)
    expect(page.get_by_role("button", name="Revision 4")).to_be_visible()
    refreshed = db(lambda: Story.objects.get(pk=story.pk))
    assert (refreshed.text, refreshed.revision) == (OPENING, 4)
    # The restore is a try of the story's tree, the current one.
    page.get_by_role("button", name="Tree").click()
    expect(page.locator("#tree-list .tree-kind")).to_have_text(["Revision 1"])
    expect(page.locator("#tree-list [aria-current=true]")).to_have_count(1)
    page.reload()
    expect_story_text(page, OPENING)


def test_a_share_link_reads_the_story_until_it_is_revoked(writer, new_page, context, live_site):
    story = writer[0]
    page = open_editor(new_page, context, live_site, story)
    page.get_by_role("button", name="Share").click()
    page.get_by_role("button", name="Create a read-only link").click()
    link = page.get_by_label("Share link")
    expect(link).to_have_value(re.compile(r"/s/[\w-]{32,}/$"))
    url = link.input_value()

    reader = new_page()  # another browser context: not logged in
    reader.goto(url)
    expect(reader.get_by_role("heading", name="Whiskers")).to_be_visible()
    expect(reader.locator("article")).to_contain_text(OPENING)
    expect(reader.get_by_role("textbox", name="Story")).to_have_count(0)

    page.get_by_role("button", name="Stop sharing").click()
    expect(page.get_by_role("button", name="Create a read-only link")).to_be_visible()
    response = reader.goto(url)
    assert response.status == 404


def test_an_exported_story_imports_as_the_same_story(writer, new_page, context, live_site, tmp_path):
    story = writer[0]
    db(lambda: Story.objects.filter(pk=story.pk).update(memory="A grey cat.", note="Calm.", note_depth=1))
    db(lambda: story.lore.create(keys="pier", text="It creaks."))
    page = open_editor(new_page, context, live_site, story)
    page.get_by_role("button", name="Export").click()
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile(r"Storyteller file")).click()
    path = tmp_path / "story.json"
    download.value.save_as(path)
    assert json.loads(path.read_text())["memory"] == "A grey cat."

    page.goto(f"{live_site}/stories/")
    page.get_by_label("Storyteller file (.json)").set_input_files(path)
    page.get_by_role("button", name="Import").click()

    expect_story_text(page, OPENING)
    expect(page.get_by_label("Memory text")).to_have_value("A grey cat.", timeout=5_000)
    copy = db(lambda: Story.objects.exclude(pk=story.pk).get())
    # Beside the story it came from, marked as the imported one.
    assert (copy.title, copy.text, copy.memory, copy.note, copy.note_depth) == (
        "Whiskers (imported)",
        OPENING,
        "A grey cat.",
        "Calm.",
        1,
    )
    assert db(lambda: list(copy.lore.values_list("keys", "text"))) == [("pier", "It creaks.")]


def test_two_tabs_the_stale_one_sees_both_versions_and_chooses(writer, new_page, context, live_site):
    story = writer[0]
    first = open_editor(new_page, context, live_site, story)
    second = open_editor(new_page, context, live_site, story)

    first.get_by_role("textbox", name="Story").fill("The first tab's words.")
    expect(first.locator("#save-state")).to_have_text("Saved")
    second.get_by_role("textbox", name="Story").fill("The second tab's words.")

    expect(second.locator("#conflict")).to_be_visible()
    expect(second.locator("#save-state")).to_have_text("Not saved: conflict")
    assert db(lambda: Story.objects.get(pk=story.pk).text) == "The first tab's words."
    second.get_by_text("Compare the two versions").click()
    expect(second.locator("#conflict-mine")).to_have_text("The second tab's words.")
    expect(second.locator("#conflict-theirs")).to_have_text("The first tab's words.")

    second.get_by_role("button", name="Keep my version").click()
    expect(second.locator("#save-state")).to_have_text("Saved")
    assert db(lambda: Story.objects.get(pk=story.pk).text) == "The second tab's words."


def test_words_typed_offline_are_kept_and_saved_when_back_online(writer, new_page, context, live_site):
    story = writer[0]
    page = open_editor(new_page, context, live_site, story)
    context.set_offline(True)
    page.get_by_role("textbox", name="Story").fill("Written on a train.")
    expect(page.locator("#save-state")).to_have_text("Offline: kept in this browser")
    assert db(lambda: Story.objects.get(pk=story.pk).text) == OPENING

    context.set_offline(False)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert db(lambda: Story.objects.get(pk=story.pk).text) == "Written on a train."


def test_a_backup_in_the_browser_comes_back_after_a_reload(writer, new_page, context, live_site):
    story = writer[0]
    page = open_editor(new_page, context, live_site, story)

    def unreachable(route):
        return route.abort() if route.request.method == "PUT" else route.continue_()

    # Every save fails as if the server were down, until the page is closed.
    context.route("**/api/stories/**", unreachable)
    page.get_by_role("textbox", name="Story").fill("Not yet on the server.")
    expect(page.locator("#save-state")).to_have_text("Offline: kept in this browser")
    # The save a closing page sends (keepalive) can slip past routing; offline, it cannot.
    context.set_offline(True)
    page.close()
    context.set_offline(False)
    context.unroute("**/api/stories/**")
    assert db(lambda: Story.objects.get(pk=story.pk).text) == OPENING

    again = open_editor(new_page, context, live_site, story)
    expect_story_text(again, "Not yet on the server.")
    expect(again.locator("#save-state")).to_have_text("Saved")
    assert db(lambda: Story.objects.get(pk=story.pk).text) == "Not yet on the server."


def test_stop_ends_a_long_generation_and_keeps_its_words(writer, new_page, context, live_site):
    story = writer[0]
    seed, _ = db(lambda: a_seed_that_writes_to_the_full_length(LONG))
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=LONG, seed=seed)
    # The tiny model can write all 480 tokens before Escape reaches it; then the writer
    # simply got the whole continuation, and the test tries again (three times at most).
    for _ in range(3):
        before = story_text(page)
        page.keyboard.press("Control+Enter")
        expect(page.locator("#gen-state")).to_have_text("Writing...")
        page.keyboard.press("Escape")
        expect(page.locator("#gen-state")).to_have_text(re.compile("Stopped|Done"), timeout=30_000)
        generation = db(lambda: Generation.objects.order_by("-pk").first())
        expect_story_text(page, before + generation.output)
        if generation.finish_reason == "cancelled":
            break
    assert generation.finish_reason == "cancelled" and generation.new_tokens < LONG
    expect(page.locator("#gen-state")).to_have_text("Stopped")


def test_retry_keeps_every_continuation_to_browse(writer, new_page, context, live_site):
    story = writer[0]
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=12)
    generate_and_wait(page)
    first = story_text(page)[len(OPENING) :]
    assert first
    # The model's words are shown apart from the writer's, also after a reload.
    expect(page.locator(".model-text")).to_have_text(first)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    page.reload()
    expect(page.locator(".model-text")).to_have_text(first)
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    generate_and_wait(page)
    first = story_text(page)[len(OPENING) :]

    retry = page.get_by_role("button", name="Retry")
    said = page.locator("#gen-state").text_content()
    expect(retry, f"Retry stays disabled after {said!r}, having written {first!r}").to_be_enabled()
    retry.click()
    expect(page.locator("#alt-position")).to_have_text("2 of 2", timeout=60_000)
    expect(page.locator("#gen-state")).to_have_text("Done")
    second = story_text(page)[len(OPENING) :]
    assert second and second != first

    page.get_by_role("button", name="Previous continuation").click()
    expect_story_text(page, OPENING + first)
    expect(page.locator("#alt-position")).to_have_text("1 of 2")
    page.get_by_role("button", name="Next continuation").click()
    expect_story_text(page, OPENING + second)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert db(lambda: Story.objects.get(pk=story.pk).text) == OPENING + second


def test_undo_and_redo_cover_typing_and_generations_alike(writer, new_page, context, live_site):
    story = writer[0]
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=12)
    page.keyboard.type(" The end?")
    page.wait_for_timeout(1_100)  # typing pauses: the next change is a step of its own
    generate_and_wait(page)
    written = story_text(page)

    page.get_by_role("button", name="Undo").click()
    expect_story_text(page, OPENING + " The end?")
    page.get_by_role("button", name="Undo").click()
    expect_story_text(page, OPENING)
    page.get_by_role("button", name="Redo").click()
    page.get_by_role("button", name="Redo").click()
    expect_story_text(page, written)


def test_editing_model_text_makes_it_the_writers(writer, new_page, context, live_site):
    story = writer[0]
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=12)
    generate_and_wait(page)
    expect(page.locator(".model-text")).to_have_count(1)

    # Typing after the continuation is the writer's own and leaves its colour alone.
    page.keyboard.press("Control+End")
    page.keyboard.type(" Mine.")
    expect(page.locator(".model-text")).to_have_count(1)
    expect(page.locator(".model-text")).not_to_contain_text("Mine.")
    # An edit inside it makes the whole passage the writer's.
    page.evaluate("at => Quill.find(document.getElementById('story')).setSelection(at, 0)", len(OPENING) + 1)
    page.keyboard.type("x")
    expect(page.locator(".model-text")).to_have_count(0)


def test_a_continuation_finished_while_the_tab_was_closed_is_offered_on_return(writer, new_page, context, live_site):
    story = writer[0]
    seed, _ = db(lambda: a_seed_that_writes_to_the_full_length(LONG))
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=LONG, seed=seed)

    def only_queued_gets_through(socket):
        # The tiny model can write the whole continuation before a closing tab could
        # miss it; this tab hears that its request is queued, and nothing after.
        server = socket.connect_to_server()
        server.on_message(lambda message: socket.send(message) if '"queued"' in message else None)

    page.route_web_socket(re.compile("/ws/"), only_queued_gets_through)
    page.reload()
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    page.get_by_role("button", name="Generate").click()
    deadline = time.monotonic() + 30
    while (generation := db(Generation.objects.first)) is None:
        assert time.monotonic() < deadline, (
            f"the generate request never arrived; the editor says {page.locator('#gen-state').text_content()!r}"
        )
        # Through Playwright, which forwards the page's routed socket messages only while
        # it is called: a plain sleep can hold the generate request back.
        page.wait_for_timeout(100)
    page.close()
    deadline = time.monotonic() + 60
    while generation.status != "finished" and time.monotonic() < deadline:
        time.sleep(0.1)
        generation = db(Generation.objects.get)
    assert generation.status == "finished" and generation.output

    again = open_editor(new_page, context, live_site, story)
    offer = again.get_by_role("region", name="Written while you were away")
    expect(offer).to_be_visible()
    again.get_by_role("button", name="Insert it").click()

    expect_story_text(again, OPENING + generation.output)
    expect(offer).to_be_hidden()
    expect(again.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert db(lambda: Story.objects.get(pk=story.pk).text) == OPENING + generation.output


def test_a_preset_chosen_in_the_editor_is_saved_and_shown(writer, new_page, context, live_site):
    from generation.models import Preset

    story = writer[0]
    # Its own preset: transactional tests empty the tables, shipped presets included.
    creative = db(
        lambda: Preset.objects.create(name="Dreamy", description="Loose and strange.", params={"temperature": 1.3})
    )
    page = open_editor(new_page, context, live_site, story)
    page.get_by_role("button", name="Settings").click()

    page.get_by_label("Preset").select_option(label="Dreamy")

    expect(page.get_by_label("Temperature")).to_have_value(str(creative.params["temperature"]))
    expect(page.locator("#preset-description")).to_have_text(creative.description)
    expect(page.locator("#save-state")).to_have_text("Saved")
    assert db(lambda: Story.objects.get(pk=story.pk).preset_id) == creative.id
    page.get_by_label("Temperature").fill("0.3")
    expect(page.locator("#save-state")).to_have_text("Saved")
    assert db(lambda: Story.objects.get(pk=story.pk).settings)["temperature"] == 0.3
    page.reload()
    expect(page.get_by_label("Preset")).to_have_value(str(creative.id))
    expect(page.get_by_label("Temperature")).to_have_value("0.3")

    # Back to the preset's values: saved as none of the story's own, a seed set through the
    # API kept; and choosing another preset after changing a value shows and saves its values.
    db(lambda: Story.objects.filter(pk=story.pk).update(settings={"temperature": 0.3, "max_new_tokens": 20, "seed": 7}))
    page.reload()
    expect(page.get_by_label("Length (tokens)")).to_have_value("20")
    page.get_by_role("button", name="Settings").click()
    page.get_by_role("button", name="Use the preset's values").click()
    expect(page.get_by_label("Temperature")).to_have_value(str(creative.params["temperature"]))
    settings_saved_as(page, story, {"seed": 7})
    page.reload()
    expect(page.get_by_label("Temperature")).to_have_value(str(creative.params["temperature"]))
    expect(page.get_by_label("Length (tokens)")).not_to_have_value("20")
    page.get_by_role("button", name="Settings").click()
    page.get_by_label("Temperature").fill("0.4")
    settings_saved_as(page, story, {"seed": 7, "temperature": 0.4}, only=("seed", "temperature"))
    page.get_by_label("Preset").select_option(label="The site's defaults")
    settings_saved_as(page, story, {"seed": 7})


def test_a_writer_allows_training_on_a_story_in_its_settings_and_takes_it_back(writer, new_page, context, live_site):
    story = writer[0]
    page = open_editor(new_page, context, live_site, story)
    page.get_by_role("button", name="Settings").click()
    allow = page.get_by_label("Let the site's operators train models on this story")
    expect(allow).not_to_be_checked()  # off until the writer turns it on

    allow.check()
    expect(page.locator("#save-state")).to_have_text("Saved")
    assert db(lambda: Story.objects.get(pk=story.pk).allow_training) is True
    page.reload()
    page.get_by_role("button", name="Settings").click()
    expect(allow).to_be_checked()
    allow.uncheck()
    expect(page.locator("#save-state")).to_have_text("Saved")
    assert db(lambda: Story.objects.get(pk=story.pk).allow_training) is False


def settings_saved_as(page, story, expected: dict, only=None, timeout_s: float = 15) -> None:
    """Waits for the story's saved settings (those named in `only`) to become `expected`."""
    deadline = time.monotonic() + timeout_s
    while True:
        settings = db(lambda: Story.objects.get(pk=story.pk).settings)
        seen = {name: settings.get(name) for name in only} if only else settings
        if seen == expected or time.monotonic() > deadline:
            break
        page.wait_for_timeout(200)
    assert seen == expected


SET_CURSOR = "at => Quill.find(document.getElementById('story')).setSelection(at, 0)"


def test_generate_continues_from_the_end_unless_the_writer_asks_for_the_cursor(writer, new_page, context, live_site):
    story = writer[0]
    db(lambda: draft_save(story=story, base_revision=1, settings={"max_new_tokens": 6}))
    page = open_editor(new_page, context, live_site, story)
    # A writer who clicked into the first sentence to fix a typo still continues the story.
    page.evaluate(SET_CURSOR, len("Once upon a t"))
    generate_and_wait(page)
    first = db(Generation.objects.get)
    assert first.prompt_text == OPENING
    expect_story_text(page, OPENING + first.output)

    # At the cursor when the writer asks, and never inside a word: "t|ime" continues after "time".
    page.get_by_label("at the cursor").check()
    page.evaluate(SET_CURSOR, len("Once upon a t"))
    generate_and_wait(page)
    second = db(lambda: Generation.objects.order_by("-id").first())
    assert second.prompt_text == "Once upon a time"
    expect_story_text(page, "Once upon a time" + second.output + ", there was a cat named Whiskers." + first.output)

    # The choice is remembered for the next visit.
    page.reload()
    expect(page.get_by_label("at the cursor")).to_be_checked()


def test_a_writer_over_a_limit_is_stopped_with_a_clear_message(writer, new_page, context, live_site, alice):
    from generation.models import UsageLimit

    story = writer[0]
    db(lambda: UsageLimit.objects.create(user=alice, max_new_tokens=5))
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=20)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gen-state")).to_have_text(
        "You may ask for at most 5 new tokens at a time; this asks for 20. Lower the length in Settings."
    )
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()
    expect_story_text(page, OPENING)
    assert db(Generation.objects.count) == 0


def test_the_words_stream_into_view_at_the_end_of_a_long_story(writer, new_page, context, live_site):
    story = writer[0]
    # Thousands of words: the end is pages below the start.
    long_text = " ".join(f"Paragraph {n}: the tide came in over the old stones of the harbour.\n" for n in range(300))
    db(lambda: draft_save(story=story, base_revision=1, text=long_text, settings={"max_new_tokens": 60}))
    page = open_editor(new_page, context, live_site, story)
    # The story opens at its end; the writer scrolls back to its start to read.
    page.wait_for_function("() => window.scrollY > 0")
    page.evaluate("() => window.scrollTo(0, 0)")
    assert not on_screen(page, len(long_text))
    page.get_by_role("button", name="Generate").click()  # with no cursor placed: at the end
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)
    written = db(lambda: Generation.objects.get()).output
    assert written and on_screen(page, len(long_text) + len(written) - 1)


def test_the_toolbar_keeps_its_one_line_whatever_the_status_says(writer, new_page, context, live_site):
    page = open_editor(new_page, context, live_site, writer[0])
    toolbar = page.locator(".toolbar")
    height = toolbar.bounding_box()["height"]
    # Every status the editor shows, the longest ones included.
    statuses = ["Waiting for the model...", "Queued (12 ahead)", "Reading your story... 100%", "Starting...", "Done"]
    for status in statuses:
        page.evaluate("text => { document.getElementById('gen-state').textContent = text; }", status)
        assert toolbar.bounding_box()["height"] == height, status
    # The token count joins the word count once a worker has counted them.
    expect(page.locator("#word-count")).to_have_text(re.compile(r"^10 words( · \d+ tokens)?$"))
