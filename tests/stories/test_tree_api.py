"""The story's tree over HTTP: every try saved with its text, where it went on from, which
tries are alternatives of each other, the current one, and what a wrong request gets."""

import json

import pytest

from generation.models import Generation
from storyteller.stories import models as story_models
from storyteller.stories.models import TreeNode
from storyteller.stories.services import story_create, tree_add, tree_make_current
from storyteller.stories.text import utf16_length

pytestmark = pytest.mark.django_db

OPENING = "The lighthouse keeper found the letter on the stairs."


@pytest.fixture
def opening():
    return OPENING


def send(client, method, url, body=None):
    return getattr(client, method)(url, data=json.dumps(body or {}), content_type="application/json")


def add(client, story, text, start, end=None, **more):
    """A try whose words are text[start:end] (end: the end of the text)."""
    end = utf16_length(text) if end is None else end
    body = {"kind": "generation", "text": text, "start": start, "end": end, **more}
    response = send(client, "post", f"/api/stories/{story.id}/tree/", body)
    assert response.status_code == 201, response.json()
    return response.json()


def tree(client, story):
    response = client.get(f"/api/stories/{story.id}/tree/")
    assert response.status_code == 200
    return response.json()


def test_tries_go_on_from_the_try_their_text_follows_and_retries_are_alternatives(alice_client, story):
    first = OPENING + " It was addressed to her mother."
    a = add(alice_client, story, first, len(OPENING), model_spans=[[len(OPENING), len(first)]])
    b = add(alice_client, story, first + " She opened it.", len(first))
    b_retry = add(alice_client, story, first + " She burned it.", len(first), kind="retry")
    # The writer changed the opening before this one: it follows no try's words.
    c = add(alice_client, story, "A lighthouse keeper found a letter. Then another.", 35)

    assert a["parent"] is None and a["words"] == " It was addressed to her mother."
    assert a["text"] == first and a["model_spans"] == [[len(OPENING), len(first)]]
    assert b["parent"] == a["id"] and b_retry["parent"] == a["id"]
    assert b["group"] == b["id"] and b_retry["group"] == b["id"]
    assert c["parent"] is None and c["group"] == c["id"]
    listed = tree(alice_client, story)
    assert listed["current"] == c["id"]
    assert [n["id"] for n in listed["nodes"]] == [a["id"], b["id"], b_retry["id"], c["id"]]
    assert [n["kind"] for n in listed["nodes"]] == ["generation", "generation", "retry", "generation"]
    # The list leaves the texts out; one node's answer has them.
    assert "text" not in listed["nodes"][0]
    whole = alice_client.get(f"/api/stories/{story.id}/tree/{b_retry['id']}/").json()
    assert whole["text"] == first + " She burned it." and whole["words"] == " She burned it."


def test_a_try_after_the_same_text_with_another_parent_or_place_is_not_an_alternative(alice_client, story):
    a = add(alice_client, story, OPENING + " One.", len(OPENING))
    # Same text before its words, but the writer started it anew (parent null).
    b = add(alice_client, story, OPENING + " Two.", len(OPENING), parent=None)
    # Same parent, another place.
    c = add(alice_client, story, OPENING + " One. Three.", len(OPENING) + 5, parent=a["id"])
    assert b["parent"] is None and b["group"] == a["group"] == a["id"]
    assert c["group"] == c["id"]


def test_positions_count_utf16_units_like_the_editor(alice_client, story):
    text = "A fox 🦊 ran. 🌙 Night fell."
    start = utf16_length(text) - len(" Night fell.")
    node = add(alice_client, story, text, start)
    assert node["words"] == " Night fell."


def test_the_current_try_is_the_one_made_current(alice_client, story):
    a = add(alice_client, story, OPENING + " One.", len(OPENING))
    add(alice_client, story, OPENING + " Two.", len(OPENING))

    response = send(alice_client, "put", f"/api/stories/{story.id}/tree/current", {"node": a["id"]})
    assert response.status_code == 200 and response.json() == {"current": a["id"]}
    assert tree(alice_client, story)["current"] == a["id"]
    before = story.revision
    story.refresh_from_db()
    # Making a try current is the client's to show: the story's text and revision stay.
    assert story.revision == before and story.text == OPENING


def test_a_generation_of_the_story_is_linked(alice_client, alice, story):
    generation = Generation.objects.create(story=story, user=alice, seed=1, status="finished", output=" One.")
    node = add(alice_client, story, OPENING + " One.", len(OPENING), generation_id=generation.id)
    assert node["generation_id"] == generation.id


def test_deleting_a_try_deletes_what_went_on_from_it_but_never_the_current_path(alice_client, story):
    a = add(alice_client, story, OPENING + " One.", len(OPENING))
    b = add(alice_client, story, OPENING + " One. Two.", len(OPENING) + 5)
    add(alice_client, story, OPENING + " One. Two. Three.", len(OPENING) + 10)
    other = add(alice_client, story, OPENING + " Else.", len(OPENING), parent=None)
    send(alice_client, "put", f"/api/stories/{story.id}/tree/current", {"node": other["id"]})

    refused = alice_client.delete(f"/api/stories/{story.id}/tree/{other['id']}/")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
    assert "current" in refused.json()["error"]["message"]
    answer = alice_client.delete(f"/api/stories/{story.id}/tree/{b['id']}/")
    assert answer.status_code == 200 and answer.json() == {"deleted": 2}
    assert [n["id"] for n in tree(alice_client, story)["nodes"]] == [a["id"], other["id"]]
    assert alice_client.get(f"/api/stories/{story.id}/tree/{b['id']}/").status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "dream"}, "kind"),
        ({"kind": 3}, "kind"),
        ({"text": None}, "text"),
        ({"start": -1}, "start"),
        ({"start": 9, "end": 3}, "start"),
        ({"end": 999}, "start"),
        ({"start": "0"}, "start"),
        ({"end": True}, "end"),
        ({"label": "x" * 101}, "label"),
        ({"model_spans": [[5, 2]]}, "model_spans"),
        ({"model_spans": "all"}, "model_spans"),
        ({"parent": 999_999}, "parent"),
        ({"parent": "first"}, "parent"),
        ({"generation_id": 999_999}, "generation_id"),
    ],
)
def test_a_wrong_try_gets_400_naming_the_field_and_saves_nothing(alice_client, story, change, field):
    body = {"kind": "generation", "text": OPENING + " One.", "start": len(OPENING), "end": len(OPENING) + 5, **change}
    response = send(alice_client, "post", f"/api/stories/{story.id}/tree/", body)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid",
        "field": field,
        "message": response.json()["error"]["message"],
    }
    assert not TreeNode.objects.exists()


@pytest.mark.parametrize("missing", ["kind", "text", "start", "end"])
def test_a_try_missing_a_field_gets_400_naming_it(alice_client, story, missing):
    body = {"kind": "generation", "text": OPENING, "start": 0, "end": 3}
    del body[missing]
    response = send(alice_client, "post", f"/api/stories/{story.id}/tree/", body)
    assert response.status_code == 400 and response.json()["error"]["field"] == missing


def test_a_position_inside_a_character_is_refused(alice_client, story):
    text = "Moon 🌙"
    response = send(
        alice_client,
        "post",
        f"/api/stories/{story.id}/tree/",
        {"kind": "generation", "text": text, "start": 6, "end": 7},
    )
    assert response.status_code == 400
    assert "splits a character" in response.json()["error"]["message"]


def test_a_parent_or_generation_of_another_story_is_refused(alice_client, alice, story):
    other = story_create(owner=alice, title="Other", text="Else.")
    theirs = tree_add(story=other, kind="generation", text="Else. More.", start=5, end=11).node
    generation = Generation.objects.create(story=other, user=alice, seed=1, status="finished")
    for change, field in (({"parent": theirs.id}, "parent"), ({"generation_id": generation.id}, "generation_id")):
        body = {"kind": "generation", "text": OPENING, "start": 0, "end": 3, **change}
        response = send(alice_client, "post", f"/api/stories/{story.id}/tree/", body)
        assert response.status_code == 400 and response.json()["error"]["field"] == field
    assert not story.tree.exists()


def test_making_current_a_missing_try_gets_404_and_a_wrong_body_400(alice_client, story):
    url = f"/api/stories/{story.id}/tree/current"
    assert send(alice_client, "put", url, {"node": 999_999}).status_code == 404
    assert send(alice_client, "put", url, {"node": "one"}).json()["error"]["field"] == "node"
    assert send(alice_client, "put", url, {}).json()["error"]["field"] == "node"


def test_a_try_deleted_after_it_was_read_is_not_made_current(story):
    # A request read the try, and another deleted it before the first could make it current.
    kept = tree_add(story=story, kind="generation", text=OPENING + " One.", start=len(OPENING), end=len(OPENING) + 5)
    gone = tree_add(
        story=story, kind="retry", text=OPENING + " Two.", start=len(OPENING), end=len(OPENING) + 5, make_current=False
    ).node
    TreeNode.objects.filter(pk=gone.pk).delete()
    with pytest.raises(TreeNode.DoesNotExist):
        tree_make_current(story, gone)
    story.refresh_from_db()
    assert story.tree_node_id == kept.node.id


def test_a_full_tree_lets_the_oldest_tries_off_the_current_path_go(alice_client, story, monkeypatch):
    monkeypatch.setattr(story_models, "TREE_MAX_NODES", 4)
    monkeypatch.setattr("storyteller.stories.services.TREE_MAX_NODES", 4)
    path = [add(alice_client, story, OPENING + " One.", len(OPENING))]
    retries = [add(alice_client, story, OPENING + f" Retry {n}.", len(OPENING), kind="retry") for n in range(3)]
    # Back on the first try, and on from it: the oldest retries go, never the path.
    send(alice_client, "put", f"/api/stories/{story.id}/tree/current", {"node": path[0]["id"]})
    path.append(add(alice_client, story, OPENING + " One. Two.", len(OPENING) + 5))
    path.append(add(alice_client, story, OPENING + " One. Two. Three.", len(OPENING) + 10))

    kept = [n["id"] for n in tree(alice_client, story)["nodes"]]
    assert kept == [path[0]["id"], retries[2]["id"], path[1]["id"], path[2]["id"]]
    # Each answer names the tries it let go, for a client's copy of the tree.
    assert (path[1]["pruned"], path[2]["pruned"]) == ([retries[0]["id"]], [retries[1]["id"]])
    assert path[2]["parent"] == path[1]["id"] and path[1]["parent"] == path[0]["id"]


def test_the_tree_keeps_its_text_under_its_character_budget(alice_client, story, monkeypatch):
    long_story = OPENING + " word" * 2_000
    monkeypatch.setattr("storyteller.stories.services.TREE_MAX_CHARS", 3 * len(long_story) + 100)
    nodes = [add(alice_client, story, long_story + f" Try {n}.", len(long_story), parent=None) for n in range(5)]
    kept = [n["id"] for n in tree(alice_client, story)["nodes"]]
    assert kept == [n["id"] for n in nodes[-3:]]


def test_a_try_saved_without_being_made_current_leaves_the_current_one(alice_client, story):
    a = add(alice_client, story, OPENING + " One.", len(OPENING))
    shown = add(alice_client, story, OPENING + " Two.", len(OPENING), kind="tool", label="Rewrite", current=False)
    assert tree(alice_client, story)["current"] == a["id"] and shown["label"] == "Rewrite"
    body = {"kind": "tool", "text": OPENING, "start": 0, "end": 3, "current": "no"}
    response = send(alice_client, "post", f"/api/stories/{story.id}/tree/", body)
    assert response.status_code == 400 and response.json()["error"]["field"] == "current"


def test_a_try_with_no_text_before_its_words_end_is_nobodys_parent(alice_client, story):
    add(alice_client, story, "", 0, 0, kind="restore", label="Revision 1")
    after = add(alice_client, story, "Anew. More.", 5)
    assert after["parent"] is None


def test_a_try_sent_again_under_its_key_is_saved_once(alice_client, story):
    body = {"kind": "generation", "text": OPENING + " One.", "start": len(OPENING), "end": len(OPENING) + 5}
    url = f"/api/stories/{story.id}/tree/"
    first = send(alice_client, "post", url, {**body, "key": "try-1"})
    again = send(alice_client, "post", url, {**body, "key": "try-1"})
    other = send(alice_client, "post", url, {**body, "key": "try-2"})
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]
    assert story.tree.count() == 2
    long = send(alice_client, "post", url, {**body, "key": "k" * 65})
    assert long.status_code == 400 and long.json()["error"]["field"] == "key"
    assert story.tree.count() == 2
