"""The selection tools in a real browser, on a story of a few thousand words: a passage in
its middle rewritten and used (one undo step, a try of the tree), another shortened and
discarded (the story untouched, the try still kept), a free instruction, and a summary
drafted into Memory."""

import re
import time

import pytest
from playwright.sync_api import expect

from generation.management.prose import join, story_sentences
from generation.models import Generation
from storyteller.stories.models import Story
from storyteller.stories.services import draft_save
from storyteller.stories.text import utf16_length
from tests.e2e.conftest import expect_story_text, open_editor, outside_the_event_loop, story_text

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

db = outside_the_event_loop

SELECT = """([start, length]) => {
    const quill = Quill.find(document.getElementById("story"));
    quill.focus();
    quill.setSelection(start, length, "user");
}"""


@pytest.fixture
def long_story(writer):
    story = writer[0]
    text = join(story_sentences(11, 200))
    # Words the model wrote run into the passage the tests select (from the sentence before
    # it: the editor never marks a line's end as the model's), and some come after it.
    start, passage = a_passage(text)
    after = start + len(passage)
    spans = [[start - 30, start + 10], [after + 5, after + 25]]
    db(
        lambda: draft_save(
            story=story,
            base_revision=Story.objects.get(pk=story.pk).revision,
            text=text,
            model_spans=spans,
            settings={"max_new_tokens": 60},
        )
    )
    return story, text


def a_passage(text: str) -> tuple[int, str]:
    """A paragraph from the middle of the story from its second sentence on: (where it
    starts, its text)."""
    paragraph = text.index("\n\n", len(text) // 2) + 2
    middle = text.index(". ", paragraph) + 2
    return middle, text[middle : text.index("\n", middle)]


def select(page, start: int, passage: str):
    page.evaluate(SELECT, [start, len(passage)])
    expect(page.get_by_role("toolbar", name="Selection tools")).to_be_visible()


def wait_for_answer(page):
    result = page.get_by_role("region", name="Selection tool result")
    expect(result).to_be_visible()
    expect(page.get_by_role("button", name="Use it")).to_be_enabled(timeout=60_000)
    return page.locator("#tool-result-text").text_content()


def test_a_rewritten_passage_is_used_in_its_place_and_undo_brings_the_old_one_back(
    long_story, new_page, context, live_site
):
    story, text = long_story
    page = open_editor(new_page, context, live_site, story)
    expect(page.get_by_role("toolbar", name="Selection tools")).to_be_hidden()
    start, passage = a_passage(text)
    select(page, start, passage)

    page.get_by_role("button", name="Rewrite").click()
    answer = wait_for_answer(page)
    assert answer.strip()
    # Shown apart, the story untouched until the writer uses it.
    assert story_text(page) == text
    asked = db(lambda: Generation.objects.get(story=story))
    assert asked.tool == {"action": "rewrite", "selection": passage}
    assert text.startswith(asked.prompt_text) and len(asked.prompt_text) == start

    page.get_by_role("button", name="Use it").click()
    rewritten = text[:start] + answer + text[start + len(passage) :]
    expect_story_text(page, rewritten)
    expect(page.get_by_role("region", name="Selection tool result")).to_be_hidden()
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert db(lambda: Story.objects.get(pk=story.pk).text) == rewritten
    # "Saved" is the draft's; the tree's current try is put once the answer's node is saved.
    node = current_node(story, kind="tool")
    assert (node.kind, node.label, node.text, node.words) == ("tool", "Rewrite", rewritten, answer)
    # The model's words before the passage are kept up to it, the answer is the model's, and
    # the words after it moved with the change of length (in UTF-16 units, as spans count).
    end, shift = start + utf16_length(answer), utf16_length(answer) - len(passage)
    after = start + len(passage)
    assert node.model_spans == [[start - 30, start], [start, end], [after + 5 + shift, after + 25 + shift]]

    page.get_by_role("button", name="Undo").click()
    expect_story_text(page, text)


def current_node(story, kind: str, timeout: float = 15.0):
    """The story's current try once it is of `kind` (the editor saves it after the text)."""
    deadline = time.monotonic() + timeout
    while True:
        node = db(lambda: Story.objects.get(pk=story.pk).tree_node)
        if (node is not None and node.kind == kind) or time.monotonic() > deadline:
            return node
        time.sleep(0.1)


def test_a_discarded_answer_leaves_the_story_and_stays_in_the_tree(long_story, new_page, context, live_site):
    story, text = long_story
    page = open_editor(new_page, context, live_site, story)
    start, passage = a_passage(text)
    select(page, start, passage)
    page.get_by_role("button", name="Shorten").click()
    answer = wait_for_answer(page)
    # An answer its length limit cut in the middle of a sentence says so.
    generation = db(Generation.objects.get)
    cut = generation.finish_reason == "length" and not re.search(r"[.!?\u2026][\"'\u201d\u2019)\]]*$", answer)
    state = page.locator("#tool-result-state")
    if cut:
        expect(state).to_have_text("cut short at its length limit: to use in place of your passage, or discard")
    else:
        expect(state).not_to_contain_text("cut short")
    page.get_by_role("button", name="Discard").click()
    expect(page.get_by_role("region", name="Selection tool result")).to_be_hidden()
    assert story_text(page) == text
    # The passage is still selected, and its tools are back for another try.
    expect(page.get_by_role("toolbar", name="Selection tools")).to_be_visible()

    page.get_by_role("button", name="Tree").click()
    expect(page.locator("#tree-list .tree-kind")).to_have_text(["Shorten"])
    # Kept, not current: the text does not follow it.
    expect(page.locator("#tree-list [aria-current=true]")).to_have_count(0)
    node = db(lambda: Story.objects.get(pk=story.pk).tree.get())
    assert node.text == text[:start] + answer + text[start + len(passage) :]
    assert db(lambda: Story.objects.get(pk=story.pk).tree_node_id) is None


def test_a_free_instruction_is_sent_as_the_writer_typed_it(long_story, new_page, context, live_site):
    story, text = long_story
    page = open_editor(new_page, context, live_site, story)
    start, passage = a_passage(text)
    select(page, start, passage)
    page.get_by_role("textbox", name="Instruction").fill("Make it rain")
    page.get_by_role("textbox", name="Instruction").press("Enter")
    wait_for_answer(page)
    expect(page.locator("#tool-result-title")).to_have_text("Instruction")
    asked = db(lambda: Generation.objects.get(story=story))
    assert asked.tool == {"action": "instruct", "selection": passage, "instruction": "Make it rain"}


def test_a_summary_is_drafted_for_the_writer_to_add_to_memory(long_story, new_page, context, live_site):
    story, text = long_story
    page = open_editor(new_page, context, live_site, story)
    page.get_by_role("button", name="Memory").click()
    page.get_by_role("textbox", name="Memory text").fill("Mara keeps the light.")
    page.get_by_role("button", name="Summarize into memory").click()
    add = page.get_by_role("button", name="Add to memory")
    expect(add).to_be_enabled(timeout=60_000)
    draft = page.get_by_role("textbox", name="Summary draft").input_value()
    assert draft.strip()
    asked = db(lambda: Generation.objects.get(story=story))
    assert asked.tool == {"action": "summarize"} and asked.prompt_text == text

    page.get_by_role("textbox", name="Summary draft").fill("The keeper's cat went missing.")
    add.click()
    expect(page.get_by_role("textbox", name="Memory text")).to_have_value(
        "Mara keeps the light.\n\nThe keeper's cat went missing."
    )
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert (
        db(lambda: Story.objects.get(pk=story.pk).memory) == "Mara keeps the light.\n\nThe keeper's cat went missing."
    )
    assert story_text(page) == text


def each_answer(page, function: str, answers: list[list[str]]) -> list[str]:
    """tools.js's `function` of each [answer, passage asked about], run in the page."""
    src = page.locator("script[type=module]").last.get_attribute("src").replace("editor.js", "tools.js")
    run = """async ([src, name, answers]) => {
        const tools = await import(src);
        return answers.map(([answer, original]) => tools[name](answer, original));
    }"""
    return page.evaluate(run, [src, function, answers])


def test_a_first_line_about_the_answer_is_left_out_of_it_and_a_passage_of_the_story_is_not(
    long_story, new_page, context, live_site
):
    page = open_editor(new_page, context, live_site, long_story[0])
    # [answer, the passage it was asked about]
    answers = [
        ["Here's the rewritten passage:\n\nMara ran to the pier.", "Mara went to the pier."],
        ["Now this does not fit the story. Here is the revised version:\nMara ran.", "Mara walked."],
        ["Summary: Mara waits at the pier.", ""],
        ['Rin said:\n"Stay."', ""],
        ['"Over here!" he shouted:\n"Run."', ""],
        ["She described the passage:\nIt was dark.", ""],
        ["Here is the text she wrote:\nGo home.", "Here is the text she wrote:\nGo."],
        ["Mara ran to the pier.", "Mara went to the pier."],
    ]
    assert each_answer(page, "withoutPreamble", answers) == [
        "Mara ran to the pier.",
        "Mara ran.",
        "Summary: Mara waits at the pier.",  # no line of its own
        'Rin said:\n"Stay."',  # lines of the story that end with a colon
        '"Over here!" he shouted:\n"Run."',
        "She described the passage:\nIt was dark.",
        "Here is the text she wrote:\nGo home.",  # the writer's own line
        "Mara ran to the pier.",
    ]


def test_an_answer_cut_short_in_a_sentence_ends_at_its_last_whole_one_when_the_passage_did(
    long_story, new_page, context, live_site
):
    page = open_editor(new_page, context, live_site, long_story[0])
    # [answer, the passage it was asked about]
    answers = [
        ["Mara ran to the pier. The lamp", "Mara went to the pier."],
        ['Mara ran. "Stay," she said. Then the', "Mara went."],
        ["Mara ran! Rin followed\u2026 and", "Mara went?"],
        ["Mara ran to the pier and", "Mara went."],  # no whole sentence to keep
        ["Mara ran to the pier. The lamp", "Mara went to the"],  # nor did the passage end one
        ["Mara ran to the pier.", "Mara went."],
        ["Mara ran. She met Mr. Hale and J. Dunn at the", "Mara went."],  # a title, an initial
    ]
    assert each_answer(page, "wholeSentences", answers) == [
        "Mara ran to the pier.",
        'Mara ran. "Stay," she said.',
        "Mara ran! Rin followed\u2026",
        "Mara ran to the pier and",
        "Mara ran to the pier. The lamp",
        "Mara ran to the pier.",
        "Mara ran.",
    ]
