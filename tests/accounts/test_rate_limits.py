"""Logins lock out an address after repeated failures; sign-ups are limited per address."""

import pytest
from django.contrib.auth.models import User

from tests.harness import PASSWORD

pytestmark = pytest.mark.django_db


def login(client, password, address="203.0.113.7"):
    return client.post("/accounts/login/", {"username": "alice", "password": password}, REMOTE_ADDR=address)


def test_an_address_is_locked_out_after_five_failed_logins_even_with_the_right_password(client, alice):
    for _ in range(4):
        answer = login(client, "wrong")
        assert answer.status_code == 200 and b"Please enter a correct username and password" in answer.content
    fifth = login(client, "wrong")
    assert fifth.status_code == 429

    answer = login(client, PASSWORD)
    assert answer.status_code == 429
    assert b"logging in from it is paused" in answer.content and b"15 minutes" in answer.content
    assert client.get("/stories/").status_code == 302  # not logged in


def test_another_address_still_logs_in_while_one_is_locked_out(client, alice):
    for _ in range(5):
        login(client, "wrong")
    answer = login(client, PASSWORD, address="198.51.100.2")
    assert answer.status_code == 302 and answer["Location"] == "/stories/"


def test_behind_a_proxy_the_forwarded_address_is_counted(client, alice, settings):
    settings.STORYTELLER_PROXY_COUNT = 1
    for _ in range(5):
        client.post(
            "/accounts/login/",
            {"username": "alice", "password": "wrong"},
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR="198.51.100.9",
        )
    # Another client behind the same proxy is not locked out with the first.
    answer = client.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="198.51.100.10",
    )
    assert answer.status_code == 302


def signup(client, name, address="203.0.113.7"):
    return client.post(
        "/accounts/signup/",
        {"username": name, "password1": PASSWORD, "password2": PASSWORD},
        REMOTE_ADDR=address,
    )


def test_signups_from_one_address_are_limited_per_hour(client, settings):
    settings.STORYTELLER_SIGNUPS_PER_HOUR = 2
    assert signup(client, "one").status_code == 302
    client.logout()
    assert signup(client, "two").status_code == 302
    client.logout()

    answer = signup(client, "three")
    assert answer.status_code == 429
    assert b"Too many sign-ups from your address; try again in" in answer.content
    assert not User.objects.filter(username="three").exists()
    assert signup(client, "four", address="198.51.100.2").status_code == 302
