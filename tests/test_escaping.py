"""Text from a writer stays text wherever it appears: pages, the shared page, the admin's
lists (the editor in a real browser: tests/e2e/test_escaping.py)."""

import json

import pytest
from django.test import Client

from generation.models import Generation
from storyteller.stories import services

XSS = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def hostile_story(owner):
    story = services.story_create(owner=owner, title=XSS, text=f"Once {XSS} there was a cat.")
    story = services.draft_save(story=story, text=story.text, base_revision=1, memory=XSS, note=XSS)
    services.lore_create(story=story, keys="cat", text=XSS)
    story = services.share_enable(story)
    Generation.objects.create(
        story=story, user=owner, seed=1, status="finished", finish_reason="length", output=XSS, prompt_text=XSS
    )
    return story


@pytest.fixture
def staff_client(django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("olive", password="an operator passphrase"))
    return client


@pytest.mark.django_db
def test_pages_show_a_hostile_title_and_text_as_text(alice_client, alice, staff_client):
    story = hostile_story(alice)
    pages = {
        "library": alice_client.get("/stories/"),
        "editor": alice_client.get(f"/stories/{story.id}/"),
        "shared": Client().get(f"/s/{story.share_token}/"),
        "admin stories": staff_client.get("/admin/stories/story/"),
        "admin story": staff_client.get(f"/admin/stories/story/{story.id}/change/"),
        "admin generations": staff_client.get("/admin/generation/generation/"),
        "admin revisions": staff_client.get("/admin/stories/revision/"),
    }
    services.story_trash(story)
    pages["trash"] = alice_client.get("/stories/trash/")
    for name, page in pages.items():
        html = page.content.decode()
        assert page.status_code == 200, name
        assert XSS not in html, name
        assert ESCAPED in html or "\\u003Cimg src=x onerror=alert(1)\\u003E" in html, name


@pytest.mark.django_db
def test_the_api_returns_hostile_text_as_json_strings_not_html(alice_client, alice):
    story = hostile_story(alice)
    answer = alice_client.get(f"/api/stories/{story.id}/")
    assert answer["Content-Type"] == "application/json"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert json.loads(answer.content)["title"] == XSS
