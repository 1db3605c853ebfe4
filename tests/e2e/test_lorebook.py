"""A Lorebook that explains itself, in a real browser, on a story of a few thousand words:
the Test box says which entries fire on the story's end or on a passage, which key matched
where, why the others do not, and which the model's budget leaves out; an entry's rules
are set in the panel and saved."""

import re

import pytest
from playwright.sync_api import expect

from generation.management.prose import join, story_sentences
from storyteller.stories.models import Story
from storyteller.stories.services import draft_save, lore_create
from tests.e2e.conftest import leaving_asks_first, open_editor, outside_the_event_loop

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

db = outside_the_event_loop

END = "\n\nMara walked down to the old pier as the storm came in."


@pytest.fixture
def lorebook(writer):
    story = writer[0]

    def set_up():
        text = join(story_sentences(5, 200)) + END
        draft_save(story=story, base_revision=Story.objects.get(pk=story.pk).revision, text=text)
        lore_create(story=story, keys="pier, jetty", text="The pier is old and creaks.")
        lore_create(story=story, keys="/storms?/i", text="Storms come from the west.", secondary_keys="Rin")
        lore_create(story=story, keys="dragon", text="Dragons sleep under the hill.")
        # Far more than the tiny model's window holds beside the story: fires, left out.
        lore_create(story=story, keys="Mara", text="Mara keeps the light. " * 200, priority=1)

    db(set_up)
    return story


def test_the_test_box_says_which_entries_fire_why_and_which_the_budget_leaves_out(
    lorebook, new_page, context, live_site
):
    page = open_editor(new_page, context, live_site, lorebook)
    page.get_by_role("button", name="Lorebook").click()
    page.get_by_role("button", name="Test", exact=True).click()

    results = page.locator("#lore-test-results li")
    expect(results).to_have_count(4)
    expect(page.locator("#lore-test-state")).to_contain_text("2 of 4 entries fire")
    pier = results.filter(has_text="pier, jetty")
    expect(pier).to_contain_text("pier, jetty: fires")
    expect(pier).to_contain_text("“pier” (key pier)")
    expect(pier.locator("q")).to_contain_text("the old pier as the storm")
    expect(results.filter(has_text="/storms?/i")).to_contain_text("not the other keywords its rule asks for")
    expect(results.filter(has_text="dragon")).to_contain_text("no keyword in the last 3,000 characters")
    expect(results.filter(has_text="Mara: ")).to_contain_text("Mara: fires, but left out")
    # By priority: the low-priority entry comes last.
    expect(results.last).to_contain_text("Mara")


def test_rules_set_in_the_panel_are_saved_and_a_passage_is_tested_with_them(lorebook, new_page, context, live_site):
    page = open_editor(new_page, context, live_site, lorebook)
    page.get_by_role("button", name="Lorebook").click()
    # An entry with rules shows them; one without keeps them folded until asked.
    dragon = page.locator(".lore-entry").nth(2)
    expect(dragon.get_by_role("spinbutton", name="Priority")).to_be_hidden()
    dragon.get_by_text("Rules").click()
    expect(dragon.get_by_role("spinbutton", name="Priority")).to_have_value("100")
    storm = page.locator(".lore-entry").nth(1)
    storm.get_by_role("combobox", name="Secondary keys rule").select_option("not_any")
    storm.get_by_role("spinbutton", name="Priority").fill("400")
    storm.get_by_role("spinbutton", name="Scan depth").fill("500")
    page.get_by_role("textbox", name="Passage to test").fill("Rin watched the storms over the jetty.")
    page.get_by_role("button", name="Test", exact=True).click()

    expect(page.locator("#lore-test-state")).to_contain_text("entries fire")
    saved = db(lambda: lorebook.lore.get(keys="/storms?/i"))
    assert (saved.logic, saved.priority, saved.scan_chars) == ("not_any", 400, 500)
    results = page.locator("#lore-test-results li")
    # NOT: Rin is in the passage, so the storm entry is held back, and says by what.
    expect(results.first).to_contain_text("/storms?/i: does not fire")
    expect(results.first).to_contain_text("so is “Rin”, which its rule forbids")
    expect(results.filter(has_text="pier, jetty")).to_contain_text("“jetty” (key jetty)")

    # A wrong expression is refused where it is typed, and nothing is saved.
    keys = page.locator(".lore-entry").nth(2).get_by_role("textbox", name="Keywords")
    keys.fill("/dragon[/")
    keys.blur()
    expect(page.locator("#lore-state")).to_contain_text("not a regular expression")
    assert db(lambda: lorebook.lore.filter(keys="dragon").exists())
    # ...and marked at the entry, whose tab says so; the writer's words stay in the field.
    dragon = page.locator(".lore-entry").nth(2)
    expect(dragon.locator(".field-problem")).to_contain_text("Not saved: ")
    expect(dragon.locator(".field-problem")).to_contain_text("not a regular expression")
    expect(keys).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("button", name="Lorebook")).to_have_class(re.compile(r"\bhas-problem\b"))
    expect(keys).to_have_value("/dragon[/")

    # Leaving now would lose them: the page asks first.
    assert leaving_asks_first(page)

    # Fixed as the writer types, without leaving the field: saved, and the marks go.
    keys.fill("/dragons?/i")
    expect(dragon.locator(".field-problem")).to_be_hidden()
    expect(keys).to_have_attribute("aria-invalid", "false")
    expect(page.get_by_role("button", name="Lorebook")).not_to_have_class(re.compile(r"\bhas-problem\b"))
    assert db(lambda: lorebook.lore.filter(keys="/dragons?/i").exists())
    assert not leaving_asks_first(page)
