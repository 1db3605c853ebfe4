"""Every unsafe method needs the CSRF token; the API takes it in X-CSRFToken."""

import json

import pytest
from django.test import Client

from tests.test_ownership import ROUTES, filled

pytestmark = pytest.mark.django_db

UNSAFE = [route for route in ROUTES if route[0] != "GET"] + [
    ("POST", "/api/stories/", {"title": "New", "text": ""}),
    ("POST", "/api/stories/import", {"format": "storyteller.story", "version": 1, "title": "T", "text": ""}),
    ("POST", "/stories/", {"title": "New"}),
    ("POST", "/accounts/logout/", {}),
]


@pytest.fixture
def guarded(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/stories/")  # sets the csrftoken cookie, as a page load does
    return client


def _call(client, method, url, body, **headers):
    if url.startswith("/api/"):
        data = {"data": json.dumps(body), "content_type": "application/json"} if body is not None else {}
    else:
        data = {"data": body or {}}
    return getattr(client, method.lower())(url, **data, **headers)


@pytest.mark.parametrize(("method", "url", "body"), UNSAFE)
def test_an_unsafe_request_without_the_token_is_refused_and_changes_nothing(guarded, alices, method, url, body):
    story, entry, generation = alices
    before = (story.title, story.text, story.revision, story.share_token, story.lore.count())
    ids = {"story": story.id, "entry": entry.id, "generation": generation.id, "node": story.tree_node_id}
    answer = _call(guarded, method, *filled(url, body, **ids))
    assert answer.status_code == 403
    if url.startswith("/api/"):
        assert answer.json()["error"]["code"] == "csrf"
    story.refresh_from_db()
    assert (story.title, story.text, story.revision, story.share_token, story.lore.count()) == before


@pytest.mark.parametrize(("method", "url", "body"), UNSAFE)
def test_the_same_request_with_the_token_in_the_header_passes_the_check(guarded, alices, method, url, body):
    story, entry, generation = alices
    token = guarded.cookies["csrftoken"].value
    ids = {"story": story.id, "entry": entry.id, "generation": generation.id, "node": story.tree_node_id}
    answer = _call(guarded, method, *filled(url, body, **ids), HTTP_X_CSRFTOKEN=token)
    assert answer.status_code != 403
