"""The selection tools: what a `tool` may hold, the prompt each builds (in the model's chat
template when it has one), and one asked over HTTP and answered by a real worker."""

import copy
import json
import time

import pytest
from transformers import AutoTokenizer

from generation.context import TASKS, ContextTooLarge, StoryContext, assemble_tool
from generation.models import Generation
from generation.selectors import generation_unseen_for_story
from tests.generation.conftest import OPENING

PASSAGE = "The cat slept on the warm stones by the lamp and would not move."
STORY = "The keeper climbed the stairs every night.\nThe sea was loud. " * 40

# A ChatML template like SmolLM2-Instruct's (without its default system message).
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def encode(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_a_passage_tool_reads_the_story_before_it_then_its_task_and_the_passage(tokenizer):
    prompt = assemble_tool(tokenizer, STORY, {"action": "rewrite", "selection": PASSAGE}, StoryContext(), 4000)

    assert [(p.kind, p.label) for p in prompt.parts] == [
        ("tool", "Request"),
        ("story", "Story"),
        ("tool", "Request (after the story)"),
    ]
    assert prompt.parts[1].text == STORY and prompt.trimmed_tokens == 0
    after = prompt.parts[2].text
    assert after.index(TASKS["rewrite"]) < after.index(PASSAGE) and after.endswith("Answer:\n")
    assert prompt.ids == [i for part in prompt.parts for i in encode(tokenizer, part.text)]


def test_memory_is_given_as_notes_and_a_free_instruction_is_the_task(tokenizer):
    tool = {"action": "instruct", "selection": PASSAGE, "instruction": "Make it frightening"}
    prompt = assemble_tool(tokenizer, "Short.", tool, StoryContext(memory="Mara is the keeper."), 4000)
    assert "Notes on it: Mara is the keeper." in prompt.parts[0].text
    assert f"Make it frightening:\n\n{PASSAGE}" in prompt.text


def test_the_story_loses_its_oldest_tokens_to_fit_and_the_request_never(tokenizer):
    whole = assemble_tool(tokenizer, STORY, {"action": "shorten", "selection": PASSAGE}, StoryContext(), 4000)
    story_tokens = whole.parts[1].tokens
    budget = len(whole.ids) - story_tokens + 50

    fitted = assemble_tool(tokenizer, STORY, {"action": "shorten", "selection": PASSAGE}, StoryContext(), budget)

    assert len(fitted.ids) == budget and fitted.trimmed_tokens == story_tokens - 50
    # The end of the story (the tiny tokenizer has no line break: it decodes to nothing).
    assert STORY.replace("\n", "").endswith(fitted.parts[1].text.lstrip("\ufffd"))
    assert fitted.parts[0].text == whole.parts[0].text and fitted.parts[2].text == whole.parts[2].text


def test_a_passage_longer_than_the_window_is_refused_saying_so(tokenizer):
    with pytest.raises(ContextTooLarge, match="Select a shorter passage"):
        assemble_tool(tokenizer, STORY, {"action": "expand", "selection": PASSAGE * 40}, StoryContext(), 300)


def test_a_summary_reads_the_whole_story_after_its_task(tokenizer):
    prompt = assemble_tool(tokenizer, STORY, {"action": "summarize"}, StoryContext(memory="Ignored."), 4000)
    assert prompt.parts[0].text.rstrip().endswith(f"{TASKS['summarize']}:")
    assert prompt.parts[1].text == STORY and "Ignored" not in prompt.text


def test_a_model_with_a_chat_template_is_asked_in_it(tokenizer):
    chatty = copy.deepcopy(tokenizer)
    chatty.chat_template = CHATML
    prompt = assemble_tool(chatty, STORY, {"action": "describe", "selection": PASSAGE}, StoryContext(), 4000)

    assert prompt.text.startswith("<|im_start|>system\nYou are a writing assistant")
    assert f"<|im_start|>user\n{TASKS['describe']}:\n\n{PASSAGE}<|im_end|>\n" in prompt.text
    assert prompt.text.endswith("<|im_start|>assistant\n") and "Answer:" not in prompt.text


# -- over HTTP, with a real worker ----------------------------------------------------------


def start(client, story, **body):
    return client.post(
        f"/api/stories/{story.id}/generations/",
        json.dumps({"text": OPENING, "params": {"max_new_tokens": 30, "seed": 3}, **body}),
        content_type="application/json",
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_tool_asked_over_http_is_answered_and_is_never_offered_as_a_continuation(alice_client, story):
    answer = start(alice_client, story, tool={"action": "rewrite", "selection": PASSAGE})
    assert answer.status_code == 202, answer.json()
    url = f"/api/stories/{story.id}/generations/{answer.json()['generation_id']}/"
    deadline = time.monotonic() + 60
    while (read := alice_client.get(url).json())["status"] != "finished":
        assert time.monotonic() < deadline, read
        time.sleep(0.1)

    generation = Generation.objects.get(pk=read["generation_id"])
    assert read["text"] and generation.tool == {"action": "rewrite", "selection": PASSAGE}
    seen = alice_client.get(f"/api/stories/{story.id}/context").json()
    assert [part["label"] for part in seen["parts"]] == ["Request", "Story", "Request (after the story)"]
    assert PASSAGE in seen["parts"][2]["text"]
    # It belongs at no place in the story by itself: a reopened editor does not offer it.
    story.refresh_from_db()
    assert generation_unseen_for_story(story) is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tool", "field"),
    [
        ("rewrite", "tool"),
        ({"action": "poem", "selection": PASSAGE}, "tool.action"),
        ({"selection": PASSAGE}, "tool.action"),
        ({"action": "rewrite"}, "tool.selection"),
        ({"action": "rewrite", "selection": "   "}, "tool.selection"),
        ({"action": "rewrite", "selection": 5}, "tool.selection"),
        ({"action": "rewrite", "selection": "x" * 20_001}, "tool.selection"),
        ({"action": "summarize", "selection": PASSAGE}, "tool.selection"),
        ({"action": "instruct", "selection": PASSAGE}, "tool.instruction"),
        ({"action": "instruct", "selection": PASSAGE, "instruction": "x" * 501}, "tool.instruction"),
        ({"action": "shorten", "selection": PASSAGE, "instruction": "Shorter"}, "tool.instruction"),
        ({"action": "shorten", "selection": PASSAGE, "colour": "red"}, "tool.colour"),
    ],
)
def test_a_wrong_tool_gets_400_naming_its_field_and_records_nothing(alice_client, story, tool, field):
    answer = start(alice_client, story, tool=tool)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid" and answer.json()["error"]["field"] == field
    assert not Generation.objects.exists()


def test_a_passage_holding_what_looks_like_the_prompts_mark_is_read_as_written(tokenizer):
    tool = {"action": "rewrite", "selection": "A \x00story\x00 mark."}
    prompt = assemble_tool(tokenizer, STORY, tool, StoryContext(memory="\x00story\x00"), 4000)
    assert prompt.parts[1].text == STORY and "A \x00story\x00 mark." in prompt.parts[2].text
