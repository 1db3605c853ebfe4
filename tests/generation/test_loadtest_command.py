"""manage.py loadtest against the live site: real sockets, checked streams, JSON out."""

import json

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from storyteller.stories.models import Story
from storyteller.stories.services import story_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_drives_clients_and_reports_a_clean_run(live_site, capsys):
    call_command(
        "loadtest",
        *("--url", live_site, "--clients", "3", "--idle", "5", "--duration", "3", "--max-new-tokens", "16"),
        # At most 3 / 0.5 = 6 generations a client: well under the per-minute limit.
        *("--pause", "0.5"),
    )
    report = json.loads(capsys.readouterr().out)
    assert report["generations_completed"] >= 3
    assert (report["messages_lost"], report["messages_out_of_order"], report["errors"]) == (0, 0, {})
    assert report["idle_answering"] == 5
    assert report["tokens_per_s"] > 0 and 0 < report["ttft_p50_ms"] <= report["ttft_p95_ms"]
    # A stream's own rate, from its first token to its end, is at least a client's share of
    # the run's rate over the whole wall time (which counts the pauses between generations).
    assert report["stream_tokens_per_s_p50"] > report["tokens_per_s"] / 3
    assert not User.objects.filter(username__startswith="loadtest-").exists()


@pytest.mark.parametrize("url", ["http://192.0.2.10:8000", "http://no-such-host.invalid", "ftp://127.0.0.1/"])
def test_it_refuses_a_site_that_is_not_on_this_machine(url):
    with pytest.raises(CommandError, match="loopback|resolve|http://"):
        call_command("loadtest", "--url", url, "--clients", "1", "--idle", "0", "--duration", "1")
    assert not User.objects.filter(username__startswith="loadtest-").exists()


def test_it_neither_uses_nor_deletes_a_writers_account_of_its_names(live_site, alice):
    # Made before sign-up kept the prefix, or by an operator in the admin.
    writer = User.objects.create_user("loadtest-1", password="a password of their own")
    story = story_create(owner=writer, title="Mine", text="Not a load test.")
    with pytest.raises(CommandError, match="The account loadtest-1 is not the load test's: someone can log in"):
        call_command("loadtest", "--url", live_site, "--clients", "2", "--idle", "0", "--duration", "1")
    writer.refresh_from_db()
    assert writer.check_password("a password of their own") and Story.objects.filter(pk=story.pk).exists()
    # What it made before it stopped (loadtest-0) went with it.
    assert list(User.objects.filter(username__startswith="loadtest-")) == [writer]


def test_it_takes_in_and_removes_the_passwordless_writers_an_earlier_version_left(live_site):
    left = User.objects.create_user("loadtest-0")  # no password, no group
    call_command("loadtest", *("--url", live_site, "--clients", "1", "--idle", "0", "--duration", "1"))
    assert not User.objects.filter(pk=left.pk).exists()
