"""Words written while the server cannot be reached are never dropped, in a real browser:
kept words that meet a newer version come back as a conflict, answers of 502-504 are
retried like no answer, and the lorebook is kept like the story."""

import json

import pytest
from playwright.sync_api import expect

from storyteller.stories.models import LoreEntry, Story
from storyteller.stories.services import draft_save, lore_create, story_create
from tests.e2e.conftest import open_editor, outside_the_event_loop

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# A story of about 3,500 words, in paragraphs, as a writer's draft is.
PARAGRAPH = "The rain fell on the old town, and the lamps of the harbour burned low. " * 8
LONG_STORY = "\n\n".join(f"Night {night}. {PARAGRAPH.strip()}" for night in range(1, 31))
MINE = "Mara ran down to the pier with the lantern, and the cat followed her all the way."
THEIRS = "On the other side of town, the baker lit his ovens before the sun came up."


def db(query):
    return outside_the_event_loop(query)


def saved_text(story):
    return db(lambda: Story.objects.get(pk=story.pk).text)


def a_long_story(alice):
    return db(lambda: story_create(owner=alice, title="Harbour", text=LONG_STORY))


def write_offline_and_leave(page, context, words) -> str:
    """Types words at the end of the story and the memory while no save can reach the
    server, then leaves; returns what the browser kept (leave_offline)."""
    context.set_offline(True)
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    page.keyboard.type(words)
    page.get_by_role("button", name="Memory", exact=True).click()
    page.get_by_label("Memory text").fill("Mara keeps a lantern.")
    expect(page.locator("#save-state")).to_have_text("Offline: kept in this browser")
    return leave_offline(page, context)


def leave_offline(page, context) -> str:
    """The writer leaves this browser while it is offline, as a laptop shut on a train, and
    comes back on another start of it (reopen). Returns its storage, as JSON.

    The old page is left open, and offline until the test ends: whatever it still tries to
    send fails as it would on the train. (A page closed instead may send a last save as it
    unloads, which the browser delivers past the offline emulation.)"""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.wait_for_timeout(300)
    return page.evaluate("JSON.stringify(Object.fromEntries(Object.entries(localStorage)))")


@pytest.fixture
def reopen(browser, writer, live_site):
    """The writer's browser, opened again with the storage it kept."""
    opened = []

    def open_again(kept: str):
        later = browser.new_context()
        later.add_cookies([{"name": "sessionid", "value": writer[1], "url": live_site}])
        # Once: a page the test opens later in this browser finds what the last one left.
        later.add_init_script(
            script=f"""
            if (!localStorage.getItem("test:reopened")) {{
              for (const [key, value] of Object.entries({kept})) localStorage.setItem(key, value);
              localStorage.setItem("test:reopened", "1");
            }}"""
        )
        opened.append(later)
        return later

    yield open_again
    for later in opened:
        later.close()


def another_device_appends(story, words):
    def save():
        current = Story.objects.get(pk=story.pk)
        draft_save(story=current, base_revision=current.revision, text=current.text + words)

    db(save)


def test_words_kept_offline_meet_a_newer_version_as_a_conflict_and_the_writer_keeps_them(
    alice, writer, new_page, context, live_site, reopen
):
    story = a_long_story(alice)
    kept = write_offline_and_leave(open_editor(new_page, context, live_site, story), context, "\n\n" + MINE)
    another_device_appends(story, "\n\n" + THEIRS)
    later = reopen(kept)

    page = open_editor(new_page, later, live_site, story)
    expect(page.locator("#conflict")).to_be_visible()
    expect(page.locator("#conflict-reason")).to_contain_text("while offline")
    expect(page.locator("#save-state")).to_have_text("Not saved: conflict")
    page.get_by_text("Compare the two versions").click()
    expect(page.locator("#conflict-mine")).to_have_text(LONG_STORY + "\n\n" + MINE)
    expect(page.locator("#conflict-theirs")).to_have_text(LONG_STORY + "\n\n" + THEIRS)
    # Nothing is saved over the other version until the writer chooses.
    assert saved_text(story) == LONG_STORY + "\n\n" + THEIRS

    page.get_by_role("button", name="Keep my version").click()
    expect(page.locator("#save-state")).to_have_text("Saved")
    saved = db(lambda: Story.objects.get(pk=story.pk))
    assert saved.text == LONG_STORY + "\n\n" + MINE
    assert saved.memory == "Mara keeps a lantern."


def test_a_conflict_left_unanswered_comes_back_after_another_reload(
    alice, writer, new_page, context, live_site, reopen
):
    story = a_long_story(alice)
    kept = write_offline_and_leave(open_editor(new_page, context, live_site, story), context, "\n\n" + MINE)
    another_device_appends(story, "\n\n" + THEIRS)
    later = reopen(kept)
    open_editor(new_page, later, live_site, story).close()

    page = open_editor(new_page, later, live_site, story)
    expect(page.locator("#conflict")).to_be_visible()
    page.get_by_text("Compare the two versions").click()
    expect(page.locator("#conflict-mine")).to_have_text(LONG_STORY + "\n\n" + MINE)
    assert saved_text(story) == LONG_STORY + "\n\n" + THEIRS


def test_merging_keeps_both_versions_words_once(alice, writer, new_page, context, live_site, reopen):
    story = a_long_story(alice)
    kept = write_offline_and_leave(open_editor(new_page, context, live_site, story), context, "\n\n" + MINE)
    another_device_appends(story, "\n\n" + THEIRS)
    later = reopen(kept)

    page = open_editor(new_page, later, live_site, story)
    page.get_by_role("button", name="Merge the two").click()
    expect(page.locator("#conflict")).to_be_hidden()
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    merged = saved_text(story)
    assert merged == LONG_STORY + "\n\n" + THEIRS + "\n\n" + MINE
    assert db(lambda: Story.objects.get(pk=story.pk).memory) == "Mara keeps a lantern."


def test_merging_edits_at_both_ends_keeps_the_story_once(alice, writer, new_page, context, live_site, reopen):
    """This page added at the end while the other version added at the start: the merge is
    both additions around one copy of the story, not the story twice."""
    story = a_long_story(alice)

    def another_device_begins():
        current = Story.objects.get(pk=story.pk)
        draft_save(story=current, base_revision=current.revision, text=THEIRS + "\n\n" + current.text)

    kept = write_offline_and_leave(open_editor(new_page, context, live_site, story), context, "\n\n" + MINE)
    db(another_device_begins)
    page = open_editor(new_page, reopen(kept), live_site, story)
    page.get_by_role("button", name="Merge the two").click()
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert saved_text(story) == THEIRS + "\n\n" + LONG_STORY + "\n\n" + MINE


def test_loading_the_other_version_clears_what_was_kept(alice, writer, new_page, context, live_site, reopen):
    story = a_long_story(alice)
    kept = write_offline_and_leave(open_editor(new_page, context, live_site, story), context, "\n\n" + MINE)
    another_device_appends(story, "\n\n" + THEIRS)
    later = reopen(kept)

    page = open_editor(new_page, later, live_site, story)
    page.get_by_role("button", name="Load the other version").click()
    expect(page.locator("#conflict")).to_be_hidden()
    page.close()
    again = open_editor(new_page, later, live_site, story)
    expect(again.locator("#conflict")).to_be_hidden()
    expect(again.locator("#save-state")).to_have_text("Saved")
    assert saved_text(story) == LONG_STORY + "\n\n" + THEIRS


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_server_that_answers_unavailable_gets_the_save_again_when_it_is_back(
    status, alice, writer, new_page, context, live_site
):
    story = a_long_story(alice)
    page = open_editor(new_page, context, live_site, story)
    body = json.dumps({"error": {"code": "unavailable", "message": "Down for a moment."}})

    def unavailable(route):
        if route.request.method == "PUT":
            return route.fulfill(status=status, content_type="application/json", body=body)
        return route.continue_()

    context.route("**/api/stories/**", unavailable)
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    page.keyboard.type(" " + MINE)
    expect(page.locator("#save-state")).to_have_text("Server unavailable: kept in this browser")
    assert saved_text(story) == LONG_STORY

    context.unroute("**/api/stories/**")
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert saved_text(story) == LONG_STORY + " " + MINE


def test_lore_written_and_deleted_offline_is_kept_and_sent_on_the_next_visit(
    alice, writer, new_page, context, live_site, reopen
):
    story = a_long_story(alice)
    kept = db(lambda: lore_create(story=story, keys="harbour", text="The harbour is small."))
    gone = db(lambda: lore_create(story=story, keys="baker", text="The baker is kind."))
    page = open_editor(new_page, context, live_site, story)
    page.get_by_role("button", name="Lorebook").click()
    rows = page.locator(".lore-entry")
    expect(rows).to_have_count(2)

    context.set_offline(True)
    rows.nth(0).get_by_label("Lore text").fill("The harbour is small, and its lamps burn low.")
    rows.nth(0).get_by_label("Lore text").blur()
    expect(page.locator("#lore-state")).to_have_text("Offline: lore kept in this browser")
    rows.nth(1).get_by_role("button", name="Delete entry").click()
    page.get_by_role("button", name="Add entry").click()
    rows.nth(2).get_by_label("Keywords").fill("lantern")
    rows.nth(2).get_by_label("Lore text").fill("Mara's lantern is brass.")
    # Kept as it is typed, before the field is left.
    unsaved = page.evaluate(f"localStorage.getItem('storyteller:story:{story.id}:lore-unsaved')")
    assert "Mara's lantern is brass." in unsaved
    later = reopen(leave_offline(page, context))
    assert db(lambda: list(LoreEntry.objects.filter(story=story).order_by("pk").values_list("keys", "text"))) == [
        ("harbour", "The harbour is small."),
        ("baker", "The baker is kind."),
    ]

    again = open_editor(new_page, later, live_site, story)
    again.get_by_role("button", name="Lorebook").click()
    expect(again.locator(".lore-entry:visible")).to_have_count(2)

    def lore():
        return sorted(LoreEntry.objects.filter(story=story).values_list("keys", "text"))

    expected = [("harbour", "The harbour is small, and its lamps burn low."), ("lantern", "Mara's lantern is brass.")]
    for _ in range(50):
        if db(lore) == expected:
            break
        again.wait_for_timeout(200)
    assert db(lore) == expected
    assert db(lambda: LoreEntry.objects.filter(pk=gone.pk).exists()) is False
    assert db(lambda: LoreEntry.objects.get(pk=kept.pk).text) == expected[0][1]
    # Everything reached the server, so nothing is kept any more.
    assert again.evaluate(f"localStorage.getItem('storyteller:story:{story.id}:lore-unsaved')") is None
