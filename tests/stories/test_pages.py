import pytest

from storyteller.stories.models import Story
from storyteller.stories.services import story_create
from tests.conftest import PASSWORD

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


def test_log_in_and_out(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/stories/"
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/stories/")["Location"].startswith("/accounts/login/")


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
    assert 'aria-label="Story"' in page and "Once upon a time, there was a cat." in page


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
