"""Two saves of one story from the same revision at the same moment: exactly one wins,
the other gets 409, on whichever database the suite runs (SQLite or PostgreSQL)."""

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from storyteller.stories.models import Revision, Story
from storyteller.stories.services import story_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_simultaneous_saves_from_one_revision_one_wins_one_gets_409(alice):
    story = story_create(owner=alice, title="Whiskers", text="Once.")
    for base in range(1, 11):  # ten rounds, each a fresh race from the latest revision
        barrier = threading.Barrier(2)
        answers = {}

        def save(name, barrier=barrier, base=base, answers=answers):
            client = Client()
            client.force_login(alice)
            barrier.wait()
            response = client.put(
                f"/api/stories/{story.id}/",
                json.dumps({"text": f"{name} wrote round {base}.", "base_revision": base}),
                content_type="application/json",
            )
            answers[name] = response
            connection.close()

        threads = [threading.Thread(target=save, args=(name,)) for name in ("left", "right")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        statuses = sorted(answer.status_code for answer in answers.values())
        assert statuses == [200, 409], f"round {base}: {statuses}"
        winner = next(name for name, answer in answers.items() if answer.status_code == 200)
        loser = answers["left" if winner == "right" else "right"]
        assert loser.json()["story"]["text"] == f"{winner} wrote round {base}."
        saved = Story.objects.get(pk=story.pk)
        assert (saved.revision, saved.text) == (base + 1, f"{winner} wrote round {base}.")
        assert list(Revision.objects.filter(story=story, number=base + 1).values_list("text", flat=True)) == [
            saved.text
        ]
