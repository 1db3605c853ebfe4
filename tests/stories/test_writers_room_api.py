"""The API around the editor: context fields, history, sharing, trash, lore, export."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from generation.models import Generation
from generation.worker.supervisor import housekeeping
from storyteller.stories.models import Revision, Story
from storyteller.stories.services import draft_save, revisions_thin, story_create, story_trash, trash_purge

pytestmark = pytest.mark.django_db


@pytest.fixture
def opening():
    return "Once upon a time."


def send(client, method, url, body=None):
    return getattr(client, method)(url, data=json.dumps(body or {}), content_type="application/json")


# -- memory, note, settings -----------------------------------------------------------


def test_memory_note_and_settings_are_saved_with_the_story(alice_client, story):
    body = {"memory": "A grey cat.", "note": "Calm.", "note_depth": 2, "settings": {"temperature": 0.5}}
    response = send(alice_client, "put", f"/api/stories/{story.id}/", {**body, "base_revision": 1})

    assert response.status_code == 200
    saved = response.json()
    assert {k: saved[k] for k in body} == body and saved["revision"] == 2
    # Context changes move the revision (a stale tab cannot overwrite them) but add no
    # history entry: the history is the text's.
    assert list(story.revisions.values_list("number", flat=True)) == [1]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"memory": "m" * 20_001}, "memory"),
        ({"note": 5}, "note"),
        ({"note_depth": 51}, "note_depth"),
        ({"note_depth": -1}, "note_depth"),
        ({"note_depth": True}, "note_depth"),
        ({"settings": {"temperature": 9}}, "settings.temperature"),
        ({"settings": {"colour": "red"}}, "settings.colour"),
        ({"settings": []}, "settings"),
    ],
)
def test_wrong_context_fields_get_400_naming_them_and_save_nothing(alice_client, story, body, field):
    response = send(alice_client, "put", f"/api/stories/{story.id}/", {**body, "base_revision": 1})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == field
    story.refresh_from_db()
    assert (story.revision, story.memory, story.note, story.settings) == (1, "", "", {})


# -- history ------------------------------------------------------------------------------


def test_every_text_change_is_a_revision_that_can_be_read_and_restored(alice_client, story):
    draft_save(story=story, base_revision=1, text="Once upon a time, a cat.")
    draft_save(story=story, base_revision=2, text="Gone.")

    listed = alice_client.get(f"/api/stories/{story.id}/revisions/").json()
    assert [(r["number"], r["chars"], r["words"]) for r in listed] == [(3, 5, 1), (2, 24, 6), (1, 17, 4)]
    one = alice_client.get(f"/api/stories/{story.id}/revisions/2/").json()
    assert one["text"] == "Once upon a time, a cat."

    restored = send(alice_client, "post", f"/api/stories/{story.id}/revisions/2/restore", {"base_revision": 3})

    assert restored.status_code == 200
    assert (restored.json()["text"], restored.json()["revision"]) == ("Once upon a time, a cat.", 4)
    assert story.revisions.count() == 4


def test_a_stale_restore_is_refused_and_a_missing_revision_is_404(alice_client, story):
    draft_save(story=story, base_revision=1, text="Newer.")

    stale = send(alice_client, "post", f"/api/stories/{story.id}/revisions/1/restore", {"base_revision": 1})
    missing = send(alice_client, "post", f"/api/stories/{story.id}/revisions/9/restore", {"base_revision": 2})

    assert stale.status_code == 409 and stale.json()["story"]["text"] == "Newer."
    assert missing.status_code == 404
    assert Story.objects.get(pk=story.pk).text == "Newer."


def test_old_revisions_are_thinned_to_one_a_minute_and_never_all_lost(story):
    # At the start of a minute, so that seconds 1 to 4 fall in one minute and 61, 62 in the next.
    two_days_ago = (timezone.now() - timedelta(days=2)).replace(second=0, microsecond=0)
    for number in range(2, 8):
        Revision.objects.create(story=story, number=number, title="t", text=f"v{number}")
    # Revisions 1-4 in one old minute, 5-6 in the next; 7 is recent.
    for number, seconds in ((1, 1), (2, 2), (3, 3), (4, 4), (5, 61), (6, 62)):
        Revision.objects.filter(story=story, number=number).update(created_at=two_days_ago + timedelta(seconds=seconds))

    deleted = revisions_thin(story)

    assert deleted == 4
    assert list(story.revisions.order_by("number").values_list("number", flat=True)) == [4, 6, 7]


def test_thinning_keeps_the_newest_revision_even_when_it_is_old(story):
    Revision.objects.filter(story=story).update(created_at=timezone.now() - timedelta(days=9))
    assert revisions_thin(story) == 0
    assert story.revisions.count() == 1


# -- sharing ------------------------------------------------------------------------------


def test_a_share_link_shows_the_current_text_until_it_is_revoked(alice_client, client, story):
    shared = send(alice_client, "post", f"/api/stories/{story.id}/share").json()
    token = shared["share_path"].split("/")[2]
    assert len(token) >= 32  # 24 random bytes, base64: 192 bits
    assert shared["share_url"].endswith(shared["share_path"])

    draft_save(story=story, base_revision=1, text="The latest words.")
    page = client.get(shared["share_path"])
    assert page.status_code == 200 and "The latest words." in page.content.decode()
    assert page["Referrer-Policy"] == "no-referrer"
    assert 'name="Story"' not in page.content.decode()  # a reading page, not the editor

    revoked = send(alice_client, "delete", f"/api/stories/{story.id}/share")
    assert revoked.json() == {"share_url": None, "share_path": None}
    assert client.get(shared["share_path"]).status_code == 404
    again = send(alice_client, "post", f"/api/stories/{story.id}/share").json()
    assert again["share_path"] != shared["share_path"]


def test_a_shared_page_escapes_what_the_writer_typed(alice_client, client, alice):
    story = story_create(owner=alice, title="<img src=x onerror=alert(1)>", text="<script>alert(2)</script>")
    path = send(alice_client, "post", f"/api/stories/{story.id}/share").json()["share_path"]

    html = client.get(path).content.decode()

    assert "<img src=x" not in html and "<script>alert(2)" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_unknown_share_tokens_are_404(client):
    assert client.get("/s/not-a-token/").status_code == 404


def test_nobody_else_can_share_or_read_the_history_of_a_story(story, bob_client):
    assert send(bob_client, "post", f"/api/stories/{story.id}/share").status_code == 404
    assert bob_client.get(f"/api/stories/{story.id}/revisions/").status_code == 404
    assert bob_client.get(f"/api/stories/{story.id}/revisions/1/").status_code == 404
    assert (
        send(bob_client, "post", f"/api/stories/{story.id}/revisions/1/restore", {"base_revision": 1}).status_code
        == 404
    )
    assert bob_client.get(f"/api/stories/{story.id}/lore/").status_code == 404
    assert bob_client.get(f"/api/stories/{story.id}/context").status_code == 404
    assert send(bob_client, "delete", f"/api/stories/{story.id}/").status_code == 404
    assert Story.objects.get(pk=story.pk).deleted_at is None


# -- library: search, trash ---------------------------------------------------------------


def test_search_finds_stories_by_title(alice_client, alice, story):
    story_create(owner=alice, title="The Dragon's Tea", text="")

    found = alice_client.get("/api/stories/?q=dragon").json()

    assert [s["title"] for s in found] == ["The Dragon's Tea"]


def test_deleting_moves_a_story_to_the_trash_and_restore_brings_it_back(alice_client, story):
    assert send(alice_client, "delete", f"/api/stories/{story.id}/").status_code == 200

    assert alice_client.get("/api/stories/").json() == []
    assert [s["id"] for s in alice_client.get("/api/stories/?trash=1").json()] == [story.id]
    assert alice_client.get(f"/api/stories/{story.id}/").status_code == 404
    assert alice_client.get(f"/stories/{story.id}/").status_code == 404

    restored = send(alice_client, "post", f"/api/stories/{story.id}/restore")
    assert restored.status_code == 200 and restored.json()["text"] == "Once upon a time."
    assert [s["id"] for s in alice_client.get("/api/stories/").json()] == [story.id]
    assert send(alice_client, "post", f"/api/stories/{story.id}/restore").status_code == 404


def test_trashing_revokes_the_share_link(alice_client, client, story):
    path = send(alice_client, "post", f"/api/stories/{story.id}/share").json()["share_path"]
    story_trash(story)
    assert client.get(path).status_code == 404


def test_a_story_past_thirty_days_in_the_trash_is_gone_before_it_is_deleted(alice_client, story):
    story_trash(story)
    Story.objects.filter(pk=story.pk).update(deleted_at=timezone.now() - timedelta(days=31))
    assert alice_client.get("/api/stories/?trash=1").json() == []
    assert send(alice_client, "post", f"/api/stories/{story.id}/restore").status_code == 404
    assert Story.objects.filter(pk=story.pk).exists()  # housekeeping deletes it later


def test_the_trash_is_emptied_after_thirty_days(alice, story):
    kept = story_create(owner=alice, title="Kept", text="")
    story_trash(story)
    story_trash(kept)
    Story.objects.filter(pk=story.pk).update(deleted_at=timezone.now() - timedelta(days=31))

    assert trash_purge() == 1
    assert list(Story.objects.values_list("title", flat=True)) == ["Kept"]


def test_a_generation_worker_empties_the_trash_without_anyone_opening_a_page(alice, story):
    story_trash(story)
    Story.objects.filter(pk=story.pk).update(deleted_at=timezone.now() - timedelta(days=31))
    housekeeping()
    assert not Story.objects.filter(pk=story.pk).exists()


# -- lore ---------------------------------------------------------------------------------


def test_lore_entries_can_be_added_changed_and_removed(alice_client, story):
    url = f"/api/stories/{story.id}/lore/"
    created = send(alice_client, "post", url, {"keys": "pier, boats", "text": "The pier creaks."})
    assert created.status_code == 201
    entry = created.json()
    assert {k: entry[k] for k in ("keys", "text", "enabled")} == {
        "keys": "pier, boats",
        "text": "The pier creaks.",
        "enabled": True,
    }

    changed = send(alice_client, "put", f"{url}{entry['id']}/", {"enabled": False, "text": "Old pier."})
    assert (changed.json()["enabled"], changed.json()["text"]) == (False, "Old pier.")
    assert alice_client.get(f"/api/stories/{story.id}/").json()["lore"][0]["text"] == "Old pier."

    assert send(alice_client, "delete", f"{url}{entry['id']}/").status_code == 200
    assert alice_client.get(url).json() == []
    assert send(alice_client, "delete", f"{url}{entry['id']}/").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "No keys."}, "keys"),
        ({"keys": " , ", "text": "Blank keys."}, "keys"),
        ({"keys": "pier", "text": 3}, "text"),
        ({"keys": "pier", "text": "x" * 10_001}, "text"),
        ({"keys": "pier", "text": "ok", "enabled": "yes"}, "enabled"),
        ({"keys": "/pier[/", "text": "ok"}, "keys"),
        ({"keys": "pier, /x/q", "text": "ok"}, "keys"),
        ({"keys": "pier", "text": "ok", "secondary_keys": "/(/"}, "secondary_keys"),
        ({"keys": "pier", "text": "ok", "secondary_keys": 5}, "secondary_keys"),
        ({"keys": "pier", "text": "ok", "logic": "or"}, "logic"),
        ({"keys": "pier", "text": "ok", "priority": 1001}, "priority"),
        ({"keys": "pier", "text": "ok", "priority": -1}, "priority"),
        ({"keys": "pier", "text": "ok", "priority": "high"}, "priority"),
        ({"keys": "pier", "text": "ok", "scan_chars": 99}, "scan_chars"),
        ({"keys": "pier", "text": "ok", "scan_chars": 100_001}, "scan_chars"),
        ({"keys": "pier", "text": "ok", "scan_chars": 1.5}, "scan_chars"),
    ],
)
def test_wrong_lore_gets_400_naming_the_field(alice_client, story, body, field):
    response = send(alice_client, "post", f"/api/stories/{story.id}/lore/", body)
    assert response.status_code == 400 and response.json()["error"]["field"] == field
    assert story.lore.count() == 0


def test_lore_rules_are_saved_and_changed_and_a_wrong_change_saves_nothing(alice_client, story):
    url = f"/api/stories/{story.id}/lore/"
    rules = {"secondary_keys": "storm, /night(fall)?/i", "logic": "not_any", "priority": 300, "scan_chars": 8000}
    entry = send(alice_client, "post", url, {"keys": "/pier|jett(y|ies)/i, harbour", "text": "Old.", **rules}).json()
    assert {k: entry[k] for k in rules} == rules

    # Absent fields stay; a null scan depth is the default again.
    changed = send(alice_client, "put", f"{url}{entry['id']}/", {"priority": 5, "scan_chars": None}).json()
    assert (changed["priority"], changed["scan_chars"], changed["logic"]) == (5, None, "not_any")
    refused = send(alice_client, "put", f"{url}{entry['id']}/", {"logic": "and_all", "keys": "/[/"})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "keys"
    assert alice_client.get(url).json()[0]["logic"] == "not_any"


# -- what the model saw, export and import --------------------------------------------------


def test_the_context_of_the_last_generation_is_readable(alice_client, alice, story):
    assert alice_client.get(f"/api/stories/{story.id}/context").status_code == 404
    parts = [{"kind": "story", "label": "Story", "text": "Once upon a time.", "tokens": 5}]
    Generation.objects.create(
        story=story, user=alice, seed=1, context={"parts": parts, "prompt_tokens": 5, "budget": 90, "warnings": []}
    )

    body = alice_client.get(f"/api/stories/{story.id}/context").json()

    assert body["parts"] == parts and body["budget"] == 90 and body["status"] == "queued"


def test_a_json_export_imports_as_the_same_story(alice_client, story):
    send(
        alice_client,
        "put",
        f"/api/stories/{story.id}/",
        {"memory": "A grey cat.", "note": "Calm.", "note_depth": 1, "settings": {"top_k": 20}, "base_revision": 1},
    )
    send(
        alice_client, "post", f"/api/stories/{story.id}/lore/", {"keys": "pier", "text": "It creaks.", "enabled": False}
    )
    rules = {"secondary_keys": "/storm/i", "logic": "and_all", "priority": 7, "scan_chars": 500}
    send(alice_client, "post", f"/api/stories/{story.id}/lore/", {"keys": "Rin", "text": "Her brother.", **rules})
    exported = json.loads(alice_client.get(f"/api/stories/{story.id}/export?format=json").content)

    imported = send(alice_client, "post", "/api/stories/import", exported)

    assert imported.status_code == 201
    original = alice_client.get(f"/api/stories/{story.id}/").json()
    copy = imported.json()
    same = ("text", "memory", "note", "note_depth", "settings")
    assert {k: copy[k] for k in same} == {k: original[k] for k in same}
    assert copy["title"] == original["title"] + " (imported)"
    assert [(e["keys"], e["text"], e["enabled"]) for e in copy["lore"]] == [
        ("pier", "It creaks.", False),
        ("Rin", "Her brother.", True),
    ]
    assert {k: copy["lore"][1][k] for k in rules} == rules


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"lore": "pier"}, "lore"),
        ({"lore": [{"keys": "pier"}]}, "lore[0]"),
        ({"lore": [{"keys": "pier", "text": "x", "priority": "high"}]}, "lore[0]"),
        ({"lore": [{"keys": "pier", "text": "x"}, {"keys": "/[/", "text": "y"}]}, "lore[1]"),
        ({"note_depth": "3"}, "note_depth"),
        ({"memory": "m" * 20_001}, "memory"),
    ],
)
def test_a_broken_import_creates_nothing(alice_client, extra, field):
    data = {"format": "storyteller.story", "version": 1, "title": "T", "text": "x", **extra}

    response = send(alice_client, "post", "/api/stories/import", data)

    assert response.status_code == 400 and response.json()["error"]["field"] == field
    assert Story.objects.count() == 0


# -- presets ------------------------------------------------------------------------------


def test_the_site_ships_three_presets():
    from generation.models import Preset

    assert list(Preset.objects.values_list("name", flat=True)) == ["Balanced", "Creative", "Precise"]


def test_a_story_follows_its_preset_then_its_own_settings(alice_client, alice, story):
    from generation.models import Preset
    from generation.services import generation_start

    creative = Preset.objects.get(name="Creative")
    response = send(
        alice_client,
        "put",
        f"/api/stories/{story.id}/",
        {"preset": creative.id, "settings": {"top_k": 7}, "base_revision": 1},
    )
    assert response.status_code == 200 and response.json()["preset"] == creative.id

    generation = generation_start(story=story, user=alice, text="Once", params={"max_new_tokens": 5})

    assert generation.params["temperature"] == creative.params["temperature"]  # from the preset
    assert generation.params["top_k"] == 7  # the story's own setting wins
    assert generation.params["max_new_tokens"] == 5  # and the request's


@pytest.mark.parametrize("preset", ["Creative", 999_999, True, 1.5])
def test_a_wrong_preset_is_refused(alice_client, story, preset):
    response = send(alice_client, "put", f"/api/stories/{story.id}/", {"preset": preset, "base_revision": 1})
    assert response.status_code == 400 and response.json()["error"]["field"] == "preset"
    assert Story.objects.get(pk=story.pk).preset is None


def test_null_puts_a_story_back_on_the_site_defaults(alice_client, story):
    from generation.models import Preset

    Story.objects.filter(pk=story.pk).update(preset=Preset.objects.first())
    response = send(alice_client, "put", f"/api/stories/{story.id}/", {"preset": None, "base_revision": 1})
    assert response.status_code == 200 and response.json()["preset"] is None


def test_an_export_names_its_preset_and_the_import_finds_it(alice_client, story):
    from generation.models import Preset

    precise = Preset.objects.get(name="Precise")
    Story.objects.filter(pk=story.pk).update(preset=precise)
    exported = json.loads(alice_client.get(f"/api/stories/{story.id}/export?format=json").content)
    assert exported["preset"] == "Precise"

    copy = send(alice_client, "post", "/api/stories/import", exported).json()
    unknown = send(alice_client, "post", "/api/stories/import", {**exported, "preset": "Gone"}).json()

    assert copy["preset"] == precise.id and unknown["preset"] is None


def test_a_preset_with_wrong_params_is_refused_by_the_admin(admin_client):
    from generation.models import Preset

    for params in ('{"temperature": 9}', '{"seed": 3}', '{"colour": 1}', "[1]"):
        response = admin_client.post(
            "/admin/generation/preset/add/", {"name": "Odd", "description": "", "params": params, "order": 0}
        )
        assert response.status_code == 200, params  # the form again, with the error
        assert not Preset.objects.filter(name="Odd").exists()
    response = admin_client.post(
        "/admin/generation/preset/add/",
        {"name": "Odd", "description": "", "params": '{"temperature": 0.3}', "order": 0},
    )
    assert response.status_code == 302 and Preset.objects.get(name="Odd").params == {"temperature": 0.3}


# -- the model's passages -------------------------------------------------------------------


def test_model_spans_are_kept_with_the_text_and_cleared_by_a_text_change_without_them(alice_client, story):
    url = f"/api/stories/{story.id}/"
    saved = send(
        alice_client, "put", url, {"text": "Once. The cat 🐈 ran.", "model_spans": [[5, 21]], "base_revision": 1}
    )
    assert saved.status_code == 200 and saved.json()["model_spans"] == [[5, 21]]  # the cat is two units

    cleared = send(alice_client, "put", url, {"text": "Once. The cat ran.", "base_revision": 2})
    assert cleared.json()["model_spans"] == []


@pytest.mark.parametrize(
    "spans",
    [
        "0-5",
        [[0, 99]],
        [[3, 3]],
        [[4, 8], [0, 2]],
        [[0, 5], [4, 8]],
        [[0, True]],
        [[0, 1, 2]],
        [[-1, 2]],
    ],
)
def test_wrong_model_spans_are_refused(alice_client, story, spans):
    response = send(alice_client, "put", f"/api/stories/{story.id}/", {"model_spans": spans, "base_revision": 1})
    assert response.status_code == 400 and response.json()["error"]["field"] == "model_spans"
    assert Story.objects.get(pk=story.pk).model_spans == []


def test_a_story_in_the_trash_is_not_continued(alice, story):
    from generation.services import GenerationRefused, generation_start

    story_trash(story)
    with pytest.raises(GenerationRefused) as refused:
        generation_start(story=story, user=alice, text="Once", params=None)
    assert refused.value.code == "not_found" and "trash" in refused.value.message
    assert not Generation.objects.exists()


def test_saving_thins_old_revisions_once_every_fifty_saves(story):
    from storyteller.stories.services import THIN_EVERY

    two_days_ago = (timezone.now() - timedelta(days=2)).replace(second=0, microsecond=0)
    for number in (2, 3):
        Revision.objects.create(story=story, number=number, title="t", text=f"v{number}")
    Revision.objects.update(created_at=two_days_ago)  # 1, 2 and 3 in one old minute
    Story.objects.filter(pk=story.pk).update(revision=THIN_EVERY - 2)

    draft_save(story=story, base_revision=THIN_EVERY - 2, text="Not yet.")
    assert story.revisions.count() == 4
    draft_save(story=story, base_revision=THIN_EVERY - 1, text="Now.")
    assert sorted(story.revisions.values_list("number", flat=True)) == [3, THIN_EVERY - 1, THIN_EVERY]
