import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from storyteller.stories.models import Story
from storyteller.stories.services import story_create
from tests.harness import PASSWORD

pytestmark = pytest.mark.django_db


def test_sign_up_logs_the_new_writer_in_and_opens_the_library(client, django_user_model):
    response = client.post("/accounts/signup/", {"username": "carol", "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/stories/"
    assert django_user_model.objects.filter(username="carol").exists()
    assert client.get("/stories/").status_code == 200


def test_sign_up_with_mismatched_passwords_shows_the_form_again(client, django_user_model):
    response = client.post("/accounts/signup/", {"username": "carol", "password1": PASSWORD, "password2": "other"})
    assert response.status_code == 200
    assert b"didn" in response.content  # "The two password fields didn't match."
    assert not django_user_model.objects.filter(username="carol").exists()


@pytest.mark.parametrize("name", ["loadtest-3", "LoadTest-x"])
def test_sign_up_keeps_the_load_tests_names_for_it(client, django_user_model, name):
    response = client.post("/accounts/signup/", {"username": name, "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 200
    assert "Names that start with loadtest- are kept for the site&#x27;s own tools" in response.content.decode()
    assert not django_user_model.objects.exists()


def test_log_in_and_out(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/stories/"
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/stories/")["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    "path", ["/stories/", "/stories/trash/", "/stories/{id}/", "/admin/generation/trainingjob/add/"]
)
def test_reading_a_page_writes_nothing(admin_client, admin_user, path):
    story = story_create(owner=admin_user, title="Mine", text="one two three")
    # Work a page might be tempted to do on the way: a story long in the trash.
    old = story_create(owner=admin_user, title="Old", text="")
    Story.objects.filter(pk=old.pk).update(deleted_at=timezone.now() - timedelta(days=60))
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(path.format(id=story.id)).status_code == 200
    writes = [q["sql"] for q in queries if q["sql"].lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []


def test_the_library_lists_the_writers_stories_only(alice_client, alice, bob):
    story_create(owner=alice, title="Alice's tale", text="one two three")
    story_create(owner=bob, title="Bob's secret", text="")
    page = alice_client.get("/stories/").content.decode()
    assert "Alice&#x27;s tale" in page and "3 words" in page
    assert "Bob" not in page.replace("bob", "")


def test_a_new_story_opens_in_the_editor(alice_client, alice):
    response = alice_client.post("/stories/", {"title": "Whiskers", "text": "Once upon a time, there was a cat."})
    story = Story.objects.get(owner=alice)
    assert response["Location"] == f"/stories/{story.id}/"
    page = alice_client.get(response["Location"]).content.decode()
    # The editor box (named "Story" by its script; the browser tests check that) and its text.
    assert 'id="story"' in page and "Once upon a time, there was a cat." in page


def test_another_writers_editor_is_not_found(client, bob, alice):
    story = story_create(owner=alice, title="Mine", text="")
    client.force_login(bob)
    assert client.get(f"/stories/{story.id}/").status_code == 404


def test_anonymous_visitors_are_sent_to_log_in(client):
    assert client.get("/stories/")["Location"].startswith("/accounts/login/")
    assert client.get("/")["Location"] == "/accounts/login/"


def test_a_title_with_markup_stays_text_everywhere(alice_client, alice):
    story = story_create(owner=alice, title="<img src=x onerror=alert(1)>", text="<script>alert(2)</script>")
    for url in ("/stories/", f"/stories/{story.id}/"):
        page = alice_client.get(url).content.decode()
        assert "<img src=x" not in page and "<script>alert(2)" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_library_searches_titles(alice_client, alice):
    story_create(owner=alice, title="The Dragon's Tea", text="")
    story_create(owner=alice, title="Whiskers", text="")

    html = alice_client.get("/stories/?q=dragon").content.decode()

    assert "The Dragon&#x27;s Tea" in html and "Whiskers" not in html
    assert "No story has" in alice_client.get("/stories/?q=zebra").content.decode()


def test_a_story_is_renamed_from_the_library(alice_client, alice):
    story = story_create(owner=alice, title="Untitled", text="Words.")

    response = alice_client.post(f"/stories/{story.id}/rename/", {"title": "  The Long Night "})

    assert response.status_code == 302
    story.refresh_from_db()
    assert (story.title, story.revision, story.text) == ("The Long Night", 2, "Words.")
    alice_client.post(f"/stories/{story.id}/rename/", {"title": "t" * 201})
    assert "longer than 200" in alice_client.get("/stories/").content.decode()
    story.refresh_from_db()
    assert story.title == "The Long Night"


def test_delete_moves_to_the_trash_and_restore_brings_back(alice_client, alice, bob):
    story = story_create(owner=alice, title="Whiskers", text="")
    bobs = story_create(owner=bob, title="Bob's", text="")

    response = alice_client.post(f"/stories/{story.id}/trash/", follow=True)
    assert "is in the trash for 30 days" in response.content.decode()
    assert f"/stories/{story.id}/" not in alice_client.get("/stories/").content.decode()
    assert "Whiskers" in alice_client.get("/stories/trash/").content.decode()
    assert alice_client.get(f"/stories/{story.id}/").status_code == 404
    assert alice_client.post(f"/stories/{bobs.id}/trash/").status_code == 404

    alice_client.post(f"/stories/{story.id}/restore/")
    assert Story.objects.get(pk=story.pk).deleted_at is None
    assert alice_client.get(f"/stories/{story.id}/").status_code == 200


def test_a_deleted_story_is_offered_back_once_with_undo(alice_client, alice):
    story = story_create(owner=alice, title="Whiskers", text="")
    page = alice_client.post(f"/stories/{story.id}/trash/", follow=True).content.decode()
    assert "“Whiskers” is in the trash for 30 days." in page
    assert f'action="/stories/{story.id}/restore/"' in page and ">Undo</button>" in page
    # Once: the next visit to the library does not offer it again.
    assert ">Undo</button>" not in alice_client.get("/stories/").content.decode()

    alice_client.post(f"/stories/{story.id}/restore/")
    assert Story.objects.get(pk=story.pk).deleted_at is None


def test_the_library_says_just_now_for_a_story_changed_within_a_minute(alice_client, alice):
    story_create(owner=alice, title="Whiskers", text="Words.")
    older = story_create(owner=alice, title="Older", text="Words.")
    Story.objects.filter(pk=older.pk).update(updated_at=timezone.now() - timedelta(hours=3))
    page = alice_client.get("/stories/").content.decode()
    assert "changed just now" in page and "0 minutes" not in page
    assert "changed 3\xa0hours ago" in page


def test_an_import_whose_lore_is_refused_creates_nothing(alice_client, alice):
    data = {
        "format": "storyteller.story",
        "version": 1,
        "title": "Whiskers",
        "text": "Theirs.",
        "lore": [{"keys": " ", "text": "A pier."}],
    }
    answer = alice_client.post("/api/stories/import", data=data, content_type="application/json")
    assert answer.status_code == 400
    assert not Story.objects.filter(owner=alice).exists()


def test_an_import_beside_a_story_of_the_same_title_is_marked(alice_client, alice):
    from django.core.files.uploadedfile import SimpleUploadedFile

    story_create(owner=alice, title="Whiskers", text="Mine.")
    data = {"format": "storyteller.story", "version": 1, "title": "Whiskers", "text": "Theirs."}
    for _ in range(2):
        upload = SimpleUploadedFile("story.json", json.dumps(data).encode(), content_type="application/json")
        alice_client.post("/stories/import/", {"file": upload})
    titles = sorted(Story.objects.filter(owner=alice).values_list("title", flat=True))
    assert titles == ["Whiskers", "Whiskers (imported 2)", "Whiskers (imported)"]


def test_an_uploaded_export_opens_as_a_new_story(alice_client, alice):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {"format": "storyteller.story", "version": 1, "title": "Imported", "text": "Once.", "memory": "A cat."}
    upload = SimpleUploadedFile("story.json", json.dumps(data).encode(), content_type="application/json")

    response = alice_client.post("/stories/import/", {"file": upload})

    story = Story.objects.get(title="Imported")
    assert response["Location"] == f"/stories/{story.id}/"
    assert (story.owner, story.text, story.memory) == (alice, "Once.", "A cat.")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not a Storyteller .json export"),
        (b"[1, 2]", "not a Storyteller .json export"),
        (b'{"format": "other"}', "format"),
    ],
)
def test_a_broken_upload_is_refused_with_a_message(alice_client, content, message):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = alice_client.post("/stories/import/", {"file": SimpleUploadedFile("x.json", content)}, follow=True)

    assert message in response.content.decode()
    assert Story.objects.count() == 0


def test_the_editor_has_every_named_control(alice_client, alice):
    story = story_create(owner=alice, title="Whiskers", text="")
    html = alice_client.get(f"/stories/{story.id}/").content.decode()
    names = ("Generate", "Stop", "Retry", "Undo", "Redo", "History", "Share", "Export", "Memory", "Author's Note")
    for name in (*names, "Lorebook"):
        assert f">{name}</button>" in html, name
