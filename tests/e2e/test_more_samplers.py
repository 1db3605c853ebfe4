"""The fiction samplers in the editor's Settings: typed, checked where they are typed,
saved with the story, shown again after a reload, and used by its generations."""

import re

import pytest
from playwright.sync_api import expect

from generation.models import Generation, Preset
from storyteller.stories.models import Story
from tests.e2e.conftest import generate_and_wait, open_editor, outside_the_event_loop

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

db = outside_the_event_loop


def saved_settings(story):
    return db(lambda: Story.objects.get(pk=story.pk).settings)


def test_the_samplers_are_set_checked_saved_and_used(writer, new_page, context, live_site):
    story = writer[0]
    page = open_editor(new_page, context, live_site, story)
    page.get_by_role("button", name="Settings").click()
    page.get_by_text("More samplers").click()
    # Off until the writer turns them on.
    expect(page.get_by_label("DRY multiplier")).to_have_value("0")
    expect(page.get_by_label("XTC probability")).to_have_value("0")
    # The default breakers, one per line, a line break written as \n.
    expect(page.get_by_label("DRY sequence breakers (one per line)")).to_have_value('\\n\n:\n"\n*')

    page.get_by_label("Min-p").fill("0.05")
    page.get_by_label("DRY multiplier").fill("0.8")
    page.get_by_label("DRY allowed length").fill("3")
    page.get_by_label("DRY sequence breakers (one per line)").fill('\\n\n"')
    page.get_by_label("XTC probability").fill("0.5")
    page.get_by_label("XTC threshold").fill("0.9")
    expect(page.locator("#xtc-threshold-problem")).to_have_text("XTC threshold must be a number from 0 to 0.5.")
    expect(page.locator("#settings-problems")).to_contain_text("One setting needs fixing")
    page.get_by_label("XTC threshold").fill("0.15")
    expect(page.locator("#settings-problems")).to_be_hidden()
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    settings = saved_settings(story)
    assert {name: settings[name] for name in ("min_p", "dry_multiplier", "dry_allowed_length")} == {
        "min_p": 0.05,
        "dry_multiplier": 0.8,
        "dry_allowed_length": 3,
    }
    assert settings["dry_sequence_breakers"] == ["\n", '"']
    assert (settings["xtc_probability"], settings["xtc_threshold"]) == (0.5, 0.15)

    page.reload()
    page.get_by_role("button", name="Settings").click()
    page.get_by_text("More samplers").click()
    expect(page.get_by_label("DRY sequence breakers (one per line)")).to_have_value('\\n\n"')
    expect(page.get_by_label("XTC threshold")).to_have_value("0.15")

    generate_and_wait(page)
    params = db(lambda: Generation.objects.get(story=story).params)
    assert (params["dry_multiplier"], params["dry_sequence_breakers"], params["xtc_threshold"]) == (
        0.8,
        ["\n", '"'],
        0.15,
    )


def test_a_preset_can_carry_the_samplers(writer, new_page, context, live_site):
    story = writer[0]
    tidy = db(
        lambda: Preset.objects.create(
            name="Tidy", description="Repeats less.", params={"dry_multiplier": 1.2, "min_p": 0.1, "stop": ["\n\n"]}
        )
    )
    page = open_editor(new_page, context, live_site, story)
    page.get_by_role("button", name="Settings").click()
    page.get_by_label("Preset").select_option(label="Tidy")
    page.get_by_text("More samplers").click()
    expect(page.get_by_label("DRY multiplier")).to_have_value("1.2")
    expect(page.get_by_label("Min-p")).to_have_value("0.1")
    # A stop sequence of two line breaks reads as \n\n, not as two empty lines.
    expect(page.get_by_label("Stop at (one per line)")).to_have_value("\\n\\n")
    expect(page.locator("#save-state")).to_have_text("Saved")
    assert db(lambda: Story.objects.get(pk=story.pk).preset_id) == tidy.id
    generate_and_wait(page)
    params = db(lambda: Generation.objects.get(story=story).params)
    assert (params["dry_multiplier"], params["min_p"], params["stop"]) == (1.2, 0.1, ["\n\n"])
    expect(page.locator("#gen-state")).to_have_text(re.compile("Done|Stopped"))


def test_banned_phrases_and_word_bias_are_typed_checked_and_kept_out_of_the_text(writer, new_page, context, live_site):
    story = writer[0]
    # Greedy, so the second continuation would repeat the first but for the ban.
    db(lambda: Story.objects.filter(pk=story.pk).update(settings={"temperature": 0, "max_new_tokens": 60}))
    page = open_editor(new_page, context, live_site, story)
    generate_and_wait(page)
    first = db(lambda: Generation.objects.get(story=story).output)
    # The tiny model writes long runs without spaces: a word of a writer's length.
    word = max((w for w in (w.strip(".,!?\"'") for w in first.split()) if len(w) <= 30), key=len)
    assert len(word) >= 3

    page.get_by_role("button", name="Settings").click()
    page.get_by_text("Banned phrases and word bias").click()
    bias = page.get_by_label(re.compile(r"^Word bias"))
    bias.fill("sea = 2\nharbour -3")
    expect(page.locator("#bias-problem")).to_contain_text('line 2 must be a word, "=" and a number')
    bias.fill("sea = 2\nharbour = -30")
    expect(page.locator("#bias-problem")).to_contain_text("harbour must be from -10 to 10.")
    bias.fill("sea = 2\nharbour = -3")
    page.get_by_label(re.compile(r"^Banned words and phrases")).fill(word.upper())
    expect(page.locator("#settings-problems")).to_be_hidden()
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    settings = saved_settings(story)
    assert (settings["banned"], settings["bias"]) == ([word.upper()], {"sea": 2, "harbour": -3})

    page.reload()
    page.get_by_role("button", name="Settings").click()
    page.get_by_text("Banned phrases and word bias").click()
    expect(page.get_by_label(re.compile(r"^Word bias"))).to_have_value("sea = 2\nharbour = -3")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)
    second = db(lambda: Generation.objects.filter(story=story).latest("pk"))
    assert second.params["banned"] == [word.upper()]
    assert word.lower() not in second.output.lower() and second.output
