"""generation_unseen_for_story: what the editor offers or follows when a story is opened."""

from datetime import timedelta

import pytest

from generation.models import Generation
from generation.selectors import generation_unseen_for_story
from storyteller.stories.models import Story
from storyteller.stories.services import story_create
from tests.generation.conftest import OPENING

pytestmark = pytest.mark.django_db


def make(story, *, status="finished", output=" The end.", finished_delta=timedelta(seconds=5), prompt=OPENING):
    finished_at = story.updated_at + finished_delta if status == "finished" else None
    return Generation.objects.create(
        story=story,
        user=story.owner,
        seed=1,
        status=status,
        finish_reason="length" if finished_at else "",
        output=output,
        prompt_text=prompt,
        finished_at=finished_at,
    )


def test_nothing_is_offered_without_a_generation(story):
    assert generation_unseen_for_story(story) is None


def test_a_generation_finished_after_the_last_save_is_offered_after_its_prompt(story):
    generation = make(story)
    assert generation_unseen_for_story(story) == {
        "id": generation.id,
        "status": "finished",
        "finish_reason": "length",
        "text": " The end.",
        "insert_at": len(OPENING),
        "skip": 0,
    }


def test_one_finished_before_the_last_save_was_seen(story):
    make(story, finished_delta=timedelta(seconds=-5))
    assert generation_unseen_for_story(story) is None


def test_the_part_autosave_already_kept_is_not_offered_twice(story):
    Story.objects.filter(pk=story.pk).update(text=OPENING + " The e")
    story.refresh_from_db()
    make(story)
    offered = generation_unseen_for_story(story)
    assert (offered["text"], offered["insert_at"], offered["skip"]) == ("nd.", len(OPENING) + 6, 6)


def test_output_already_all_in_the_story_is_not_offered(story):
    Story.objects.filter(pk=story.pk).update(text=OPENING + " The end.")
    story.refresh_from_db()
    make(story)
    assert generation_unseen_for_story(story) is None


def test_a_running_generation_is_followed_again(story):
    generation = make(story, status="running", output=" The")
    offered = generation_unseen_for_story(story)
    assert (offered["id"], offered["status"], offered["insert_at"]) == (generation.id, "running", len(OPENING))


def test_positions_count_utf16_units_as_the_editor_does(alice):
    story = story_create(owner=alice, title="T", text="A cat 🐈 sat.")
    make(story, prompt="A cat 🐈 sat.", output=" 🐟!")
    offered = generation_unseen_for_story(story)
    assert offered["insert_at"] == len("A cat 🐈 sat.") + 1  # the cat is two UTF-16 units
