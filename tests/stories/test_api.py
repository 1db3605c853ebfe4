import json

import pytest

from storyteller.stories.models import Revision, Story
from storyteller.stories.services import story_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def opening():
    return "Once upon a time."


def put(client, story_id, body, **extra):
    return client.put(f"/api/stories/{story_id}/", data=json.dumps(body), content_type="application/json", **extra)


def test_it_lists_only_the_callers_stories(alice_client, story, bob):
    story_create(owner=bob, title="Bob's", text="")
    response = alice_client.get("/api/stories/")
    assert response.status_code == 200
    assert response.json() == [
        {
            "id": story.id,
            "title": "Whiskers",
            "updated_at": story.updated_at.isoformat(),
            "revision": 1,
            "words": 4,
            "deleted_at": None,
        }
    ]


def test_it_creates_a_story_at_revision_one(alice_client, alice):
    response = alice_client.post(
        "/api/stories/", data={"title": "New", "text": "It was a dark night."}, content_type="application/json"
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "title", "text", "revision", "updated_at", "settings"} | {
        "memory",
        "note",
        "note_depth",
        "lore",
        "share_url",
        "words",
        "preset",
        "model_spans",
        "allow_training",
    }
    assert (body["title"], body["text"], body["revision"], body["settings"]) == ("New", "It was a dark night.", 1, {})
    assert Story.objects.get(pk=body["id"]).owner == alice


def test_a_story_without_a_title_gets_a_default_one(alice_client):
    response = alice_client.post("/api/stories/", data={}, content_type="application/json")
    assert response.status_code == 201
    assert response.json()["title"] == "Untitled story"


def test_it_returns_the_story_object(alice_client, story):
    body = alice_client.get(f"/api/stories/{story.id}/").json()
    assert body["id"] == story.id and body["text"] == "Once upon a time." and body["revision"] == 1


def test_a_save_bumps_the_revision_and_records_it(alice_client, story):
    response = put(alice_client, story.id, {"text": "Once upon a time, a cat.", "base_revision": 1})
    assert response.status_code == 200
    assert response.json()["revision"] == 2
    story.refresh_from_db()
    assert story.text == "Once upon a time, a cat."
    assert list(Revision.objects.filter(story=story).values_list("number", flat=True)) == [2, 1]


def test_a_save_that_changes_nothing_keeps_the_revision(alice_client, story):
    response = put(alice_client, story.id, {"text": "Once upon a time.", "base_revision": 1})
    assert response.json()["revision"] == 1


def test_a_stale_save_gets_409_with_the_current_story_and_writes_nothing(alice_client, story):
    put(alice_client, story.id, {"text": "Tab one's text.", "base_revision": 1})
    response = put(alice_client, story.id, {"text": "Tab two's text.", "base_revision": 1})
    assert response.status_code == 409
    body = response.json()
    assert body["error"]["code"] == "conflict"
    assert body["story"]["text"] == "Tab one's text." and body["story"]["revision"] == 2
    story.refresh_from_db()
    assert story.text == "Tab one's text."


def test_another_writers_story_is_not_found_for_every_method(client, bob, story):
    client.force_login(bob)
    assert client.get(f"/api/stories/{story.id}/").status_code == 404
    assert put(client, story.id, {"text": "mine now", "base_revision": 1}).status_code == 404
    assert client.get(f"/api/stories/{story.id}/export?format=txt").status_code == 404
    story.refresh_from_db()
    assert story.text == "Once upon a time."


def test_a_missing_story_is_not_found_too(alice_client):
    response = alice_client.get("/api/stories/999999/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_anonymous_callers_get_403_not_a_login_page(client, story):
    for response in (client.get("/api/stories/"), client.get(f"/api/stories/{story.id}/")):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"base_revision": 1}, "text"),
        ({"text": "x"}, "base_revision"),
        ({"text": 5, "base_revision": 1}, "text"),
        ({"text": "x", "base_revision": "1"}, "base_revision"),
        ({"text": "x", "base_revision": True}, "base_revision"),
        ({"text": "x", "base_revision": 1, "title": "t" * 201}, "title"),
        ({"text": "x", "base_revision": 1, "title": None}, "title"),
    ],
)
def test_invalid_saves_get_400_naming_the_field(alice_client, story, body, field):
    response = put(alice_client, story.id, body)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert field in response.json()["error"]["message"]
    story.refresh_from_db()
    assert story.revision == 1


def test_malformed_json_gets_400(alice_client, story):
    for body in ("{not json", "[1, 2]"):
        response = alice_client.put(f"/api/stories/{story.id}/", data=body, content_type="application/json")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid"


def test_a_story_over_the_size_limit_is_refused(alice_client, story, settings):
    settings.STORYTELLER_MAX_STORY_CHARS = 10
    response = put(alice_client, story.id, {"text": "x" * 11, "base_revision": 1})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "text"


def test_unsafe_methods_need_the_csrf_token(story, alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = put(client, story.id, {"text": "x", "base_revision": 1})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf"
    client.get("/stories/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    assert put(client, story.id, {"text": "x", "base_revision": 1}, HTTP_X_CSRFTOKEN=token).status_code == 200


@pytest.mark.parametrize(
    ("fmt", "content_type", "content"),
    [
        ("txt", "text/plain; charset=utf-8", "Once upon a time."),
        ("md", "text/markdown; charset=utf-8", "# Whiskers\n\nOnce upon a time."),
    ],
)
def test_it_exports_text_and_markdown_as_attachments(alice_client, story, fmt, content_type, content):
    response = alice_client.get(f"/api/stories/{story.id}/export?format={fmt}")
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="whiskers.{fmt}"'
    assert response.content.decode() == content


def test_a_json_export_imports_back_as_the_same_story(alice_client, story):
    story.settings = {"temperature": 0.5}
    story.save()
    exported = alice_client.get(f"/api/stories/{story.id}/export?format=json")
    assert exported["Content-Type"] == "application/json"
    data = json.loads(exported.content)
    assert (data["format"], data["version"]) == ("storyteller.story", 1)
    response = alice_client.post("/api/stories/import", data=data, content_type="application/json")
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != story.id
    # Beside the story it came from, the copy's title says it is the imported one.
    assert (body["title"], body["text"], body["settings"]) == (
        "Whiskers (imported)",
        "Once upon a time.",
        {"temperature": 0.5},
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"format": "other", "version": 1}, "format"),
        ({"format": "storyteller.story", "version": 2}, "version"),
        ({"format": "storyteller.story", "version": 1, "text": 3}, "text"),
        ({"format": "storyteller.story", "version": 1, "settings": {"temperature": 99}}, "settings.temperature"),
    ],
)
def test_a_foreign_or_broken_import_is_refused(alice_client, data, field):
    response = alice_client.post("/api/stories/import", data=data, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    assert not Story.objects.exists()


def test_an_unknown_export_format_is_refused(alice_client, story):
    response = alice_client.get(f"/api/stories/{story.id}/export?format=pdf")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "format"


def test_a_writer_allows_training_on_a_story_and_takes_it_back(alice_client, story):
    assert alice_client.get(f"/api/stories/{story.id}/").json()["allow_training"] is False
    allowed = put(alice_client, story.id, {"allow_training": True, "base_revision": 1})
    assert allowed.status_code == 200 and allowed.json()["allow_training"] is True
    taken_back = put(alice_client, story.id, {"allow_training": False, "base_revision": 2})
    assert taken_back.json()["allow_training"] is False
    story.refresh_from_db()
    assert story.allow_training is False


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_allow_training_takes_true_or_false_only(alice_client, story, value):
    response = put(alice_client, story.id, {"allow_training": value, "base_revision": 1})
    assert response.status_code == 400 and response.json()["error"]["field"] == "allow_training"
    story.refresh_from_db()
    assert story.allow_training is False and story.revision == 1
