import json
import os

import pytest
from django.core.exceptions import ImproperlyConfigured

from storyteller import redis_urls
from storyteller.env import env_bool, env_int, env_list


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("yes", True), ("OFF", False), ("0", False), ("", False)])
def test_env_bool_reads_the_usual_spellings(monkeypatch, raw, value):
    monkeypatch.setenv("FLAG", raw)
    assert env_bool("FLAG") is value


def test_env_bool_refuses_anything_else(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG"):
        env_bool("FLAG")


def test_env_int_checks_type_and_range(monkeypatch):
    monkeypatch.setenv("N", "12")
    assert env_int("N", 1, minimum=1, maximum=20) == 12
    monkeypatch.setenv("N", "twelve")
    with pytest.raises(ImproperlyConfigured, match="N must be an integer"):
        env_int("N", 1)
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("N", 5, minimum=1)


def test_unset_values_take_their_defaults(monkeypatch):
    monkeypatch.delenv("UNSET", raising=False)
    assert env_int("UNSET", 7) == 7 and env_bool("UNSET", True) and env_list("UNSET", ["a"]) == ["a"]


def test_env_list_splits_on_commas(monkeypatch):
    monkeypatch.setenv("HOSTS", "example.com, www.example.com,")
    assert env_list("HOSTS", []) == ["example.com", "www.example.com"]


def test_a_redis_url_of_another_scheme_is_refused():
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        redis_urls.check_redis_url("http://localhost:6379")


def test_the_broker_spells_a_unix_socket_its_own_way():
    assert redis_urls.celery_broker_url("unix:///tmp/r.sock") == "redis+socket:///tmp/r.sock"
    assert redis_urls.celery_broker_url("redis://h:6379/0") == "redis://h:6379/0"


def test_a_deep_data_directory_gets_its_socket_under_tmp(tmp_path):
    deep = tmp_path / ("d" * 120)
    socket = redis_urls.embedded_socket_path(deep)
    assert len(str(socket)) < 108
    assert socket == redis_urls.embedded_socket_path(deep)


def _manage(*args, env=None):
    import subprocess
    import sys

    from tests.harness.processes import ROOT

    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **(env or {})}, capture_output=True, text=True
    )


_SERVING = ["DEBUG", "SESSION_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"]


def _serving(env=None) -> dict:
    """How the site started with `env` answers requests: debug pages, and HTTPS-only or not."""
    code = "import json; from django.conf import settings as s; print(json.dumps({n: getattr(s, n) for n in %r}))"
    result = _manage("shell", "-c", code % _SERVING, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.splitlines()[-1])  # after what `shell` says of itself


def test_it_serves_make_run_without_debug_pages_and_over_plain_http():
    plain_http = {"SESSION_COOKIE_SECURE": False, "SECURE_SSL_REDIRECT": False, "SECURE_HSTS_SECONDS": 0}
    assert _serving() == {"DEBUG": False, **plain_http}
    assert _serving({"DJANGO_DEBUG": "1"}) == {"DEBUG": True, **plain_http}


PRODUCTION = {
    "DJANGO_PRODUCTION": "1",
    "DJANGO_SECRET_KEY": "k7Qp2vX9-example-only-not-used-anywhere-zR4mT8wY1nB6cH3jL5sD0fG",
    "DJANGO_ALLOWED_HOSTS": "stories.example.com",
}


def test_the_production_settings_pass_the_deploy_checks():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_weak_production_secret_fails_the_deploy_checks():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env={**PRODUCTION, "DJANGO_SECRET_KEY": "short"})
    assert result.returncode != 0 and "security.W009" in result.stderr


def test_production_without_a_secret_key_stops_with_a_clear_message():
    result = _manage("check", env={"DJANGO_PRODUCTION": "1"})
    assert result.returncode == 1
    assert result.stderr.strip() == "Storyteller cannot start: DJANGO_SECRET_KEY must be set when DJANGO_PRODUCTION=1."


def test_it_refuses_debug_pages_in_production():
    result = _manage("check", env={**PRODUCTION, "DJANGO_DEBUG": "1"})
    assert result.returncode == 1
    assert "DJANGO_DEBUG=1" in result.stderr and "DJANGO_PRODUCTION=1" in result.stderr


def test_it_refuses_a_secret_key_without_being_told_whether_it_is_production():
    """The production recipe of old (DJANGO_DEBUG=0 and a key) must not start without HSTS."""
    old_recipe = {key: value for key, value in PRODUCTION.items() if key != "DJANGO_PRODUCTION"}
    result = _manage("check", env={**old_recipe, "DJANGO_DEBUG": "0"})
    assert result.returncode == 1
    assert "set DJANGO_PRODUCTION=1" in result.stderr


def test_the_repository_holds_no_secret():
    import re
    import subprocess

    from tests.harness.processes import ROOT

    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    files = listed.stdout.split()
    assert not [f for f in files if f.startswith("var/") or f.endswith(("secret_key", ".pem", ".key", ".env"))]
    secret = re.compile(r"SECRET_KEY\s*=\s*['\"]|-----BEGIN [A-Z ]*PRIVATE KEY|django-insecure-\S{40}")
    found = [f for f in files if (ROOT / f).is_file() and secret.search((ROOT / f).read_text(errors="ignore"))]
    assert found == []
