"""Lorebook entries that explain themselves: keys as words or regular expressions (with a
time limit), secondary keys with AND / NOT, a scan depth and a priority, and the report of
which entries fired, why, and which the budget left out."""

import time

import pytest
from transformers import AutoTokenizer

from generation.context import LoreEntry, StoryContext, assemble
from generation.lore import KeyProblem, compile_key, judge, split_keys

STORY = "Mara walked to the old pier at dusk.\nThe boats were in. Her brother Rin waited by the nets."


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_keys_split_on_commas_but_not_inside_a_regular_expression():
    assert split_keys("pier, the boats ,, /r[io]n{1,2}/i, harbour") == [
        "pier",
        "the boats",
        "/r[io]n{1,2}/i",
        "harbour",
    ]
    assert split_keys("  ") == []


@pytest.mark.parametrize(
    ("key", "words"),
    [("/[/i", "not a regular expression"), ("/rin/q", "flag “q”"), ("x" * 201, "longer than 200")],
)
def test_a_key_that_cannot_be_used_is_named(key, words):
    with pytest.raises(KeyProblem, match=words):
        compile_key(key)


def test_a_word_matches_whole_in_any_case_and_an_expression_as_written():
    assert compile_key("rin").search(STORY) and not compile_key("rin").search("bring the nets")
    assert compile_key("/Ri?n\\b/").search(STORY) and not compile_key("/rin/").search(STORY)
    assert compile_key("/rin/i").search(STORY)


def test_an_entry_says_which_key_matched_where():
    verdict = judge(["harbour", "pier"], [], "and_any", None, STORY)
    assert verdict.fires and verdict.reason == "fires"
    [found] = verdict.keys.found
    assert (found.key, found.text, found.from_end) == ("pier", "pier", len(STORY) - STORY.index("pier"))
    assert "the old pier at dusk" in found.around


@pytest.mark.parametrize(
    ("secondary", "logic", "fires", "reason"),
    [
        (["Rin", "storm"], "and_any", True, "fires"),
        (["Rin", "storm"], "and_all", False, "no_secondary"),
        (["Rin", "boats"], "and_all", True, "fires"),
        (["storm", "fog"], "not_any", True, "fires"),
        (["storm", "Rin"], "not_any", False, "blocked"),
        (["storm", "Rin"], "not_all", True, "fires"),
        (["boats", "Rin"], "not_all", False, "blocked"),
    ],
)
def test_secondary_keys_count_by_their_logic(secondary, logic, fires, reason):
    verdict = judge(["pier"], secondary, logic, None, STORY)
    assert (verdict.fires, verdict.reason) == (fires, reason)


def test_keys_are_looked_for_only_in_the_scan_depth():
    story = "The dragon slept. " + "Nothing happened. " * 300
    assert not judge(["dragon"], [], "and_any", None, story).fires
    deep = judge(["dragon"], [], "and_any", len(story), story)
    assert deep.fires and deep.scanned == len(story)
    assert judge(["nothing"], [], "and_any", 100, story).scanned == 100


def test_an_expression_that_runs_too_long_counts_as_no_match_and_says_so():
    story = "a" * 60 + "b. The boat."
    verdict = judge(["/(a|aa)+$/", "boat"], [], "and_any", None, story)
    assert verdict.fires and verdict.keys.timed_out == ("/(a|aa)+$/",)
    assert judge(["/(a|aa)+$/"], [], "and_any", None, story).reason == "no_key"


def test_the_prompt_takes_lore_by_priority_and_reports_every_entry(tokenizer):
    low = LoreEntry(keys=("pier",), text="The pier is old. " * 30, name="The pier", id=1, priority=10)
    high = LoreEntry(keys=("Rin",), text="Rin is Mara's brother.", name="Rin", id=2, priority=500)
    blocked = LoreEntry(
        keys=("Mara",), text="Mara keeps the light.", name="Mara", id=3, secondary_keys=("Rin",), logic="not_any"
    )
    asleep = LoreEntry(keys=("dragon",), text="Dragons sleep.", name="Dragon", id=4)
    context = StoryContext(lore=(low, high, blocked, asleep))

    roomy = assemble(tokenizer, STORY, context, budget=2000)
    assert [p.label for p in roomy.parts if p.kind == "lore"] == ["Lore: Rin", "Lore: The pier"]
    report = {line["id"]: line for line in roomy.lore}
    # By priority, then in the book's order.
    assert [line["id"] for line in roomy.lore] == [2, 3, 4, 1]
    assert report[2]["placed"] and report[2]["matches"][0]["key"] == "Rin" and report[2]["tokens"] > 0
    assert (report[3]["reason"], report[3]["secondary_matches"][0]["text"]) == ("blocked", "Rin")
    assert (report[4]["fires"], report[4]["reason"], report[4]["placed"]) == (False, "no_key", False)

    # Too little room for both: the lower priority is the one left out, and said so.
    rin_tokens = report[2]["tokens"]
    tight = assemble(tokenizer, STORY, context, budget=rin_tokens + 40)
    lines = {line["id"]: line for line in tight.lore}
    assert lines[2]["placed"] and lines[1]["fires"] and not lines[1]["placed"]
    assert any("The pier" in warning for warning in tight.warnings)


def test_a_not_rule_whose_search_ran_out_of_time_keeps_the_entry_out():
    story = "a" * 60 + "b. The pier."
    verdict = judge(["pier"], ["/(a|aa)+$/"], "not_any", None, story)
    assert (verdict.fires, verdict.reason) == (False, "blocked")
    assert verdict.secondary.timed_out == ("/(a|aa)+$/",)


def test_an_expression_that_can_match_nothing_finds_its_first_real_match():
    [found] = judge(["/x*/"], [], "and_any", None, "abx and more").keys.found
    assert found.text == "x"


def test_the_searches_of_one_prompt_share_a_time_budget():
    spent = judge(["pier", "/p.er/"], [], "and_any", None, STORY, deadline=0.0)
    assert not spent.fires and spent.keys.timed_out == ("pier", "/p.er/")


def test_a_prompt_searches_its_entries_highest_priority_first_while_their_shared_time_lasts(tokenizer):
    story = STORY + " " + "a" * 60 + "b"
    # Each of these expressions takes its whole 50 ms and finds nothing; twelve of them spend
    # more than the 0.5 s the prompt's searches share.
    slow = [LoreEntry(keys=("/(a|aa)+$/",), text=f"Slow {n}.", id=n, priority=500) for n in range(12)]
    first = LoreEntry(keys=("pier",), text="The pier is old.", id=100, priority=1000)
    last = LoreEntry(keys=("pier",), text="The pier again.", id=101, priority=0)
    prompt = assemble(tokenizer, story, StoryContext(lore=(last, *slow, first)), budget=400)
    lines = {line["id"]: line for line in prompt.lore}
    assert lines[100]["fires"] and lines[100]["placed"]
    assert all(lines[n]["timed_out"] == ["/(a|aa)+$/"] for n in range(12))
    # The low-priority entry's plain word came after the time was spent: reported, not found.
    assert (lines[101]["fires"], lines[101]["timed_out"]) == (False, ["pier"])
    assert [p.label for p in prompt.parts if p.kind == "lore"] == ["Lore: pier"]


class SlowTokenizer:
    """The tokenizer, taking 0.1 s a text: a busy worker's, or a long entry's."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, text, **options):
        time.sleep(0.1)
        return self.tokenizer(text, **options)

    def decode(self, ids):
        return self.tokenizer.decode(ids)


def test_the_time_lore_searches_share_is_not_spent_tokenizing_the_entries_that_fire(tokenizer):
    # Eight entries that fire take 0.8 s to tokenize, more than the searches' 0.5 s: each
    # entry is still searched, and found.
    lore = tuple(LoreEntry(keys=("pier",), text=f"The pier, note {n}.", id=n, priority=100 - n) for n in range(8))
    prompt = assemble(SlowTokenizer(tokenizer), STORY, StoryContext(lore=lore), budget=400)
    assert [(line["id"], line["fires"], line["timed_out"]) for line in prompt.lore] == [(n, True, []) for n in range(8)]
