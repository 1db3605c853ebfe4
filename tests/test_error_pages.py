"""Errors answer in the site's own look, never with Django's pages, and in JSON under /api/."""

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import path

from storyteller import urls as site
from storyteller.stories import services

pytestmark = pytest.mark.django_db


def _broken(request):
    raise RuntimeError("the database went away")


def _forbidden(request):
    raise PermissionDenied


# The site's own URLs and error handlers, plus views that fail, for the tests marked with
# this module.
urlpatterns = [
    *site.urlpatterns,
    path("broken/", _broken),
    path("api/broken/", _broken),
    path("api/forbidden/", _forbidden),
]
handler403, handler500 = site.handler403, site.handler500
with_failing_views = pytest.mark.urls(__name__)


def _in_the_sites_look(page: str) -> bool:
    return 'class="site-header"' in page and "/static/css/site.css" in page


def test_it_answers_a_revoked_share_link_with_the_sites_own_404_page(client, story):
    shared = services.share_enable(story)
    link = f"/s/{shared.share_token}/"
    assert client.get(link).status_code == 200
    services.share_revoke(shared)

    response = client.get(link)

    page = response.content.decode()
    assert response.status_code == 404
    assert _in_the_sites_look(page) and "Page not found" in page
    assert "staff/" not in page and "URLconf" not in page


def test_it_answers_a_page_an_account_may_not_open_with_the_sites_own_403_page(admin_user):
    client = Client()
    client.force_login(admin_user)

    # Generations are written by the workers only: the admin refuses to add one.
    response = client.get("/admin/generation/generation/add/")

    page = response.content.decode()
    assert response.status_code == 403
    assert _in_the_sites_look(page) and "Not allowed" in page


def test_it_answers_a_form_sent_without_its_csrf_token_with_the_sites_own_page(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post("/stories/", {"title": "New"})

    page = response.content.decode()
    assert response.status_code == 403
    assert _in_the_sites_look(page) and "Please try again" in page
    assert "CSRF verification failed" not in page


def test_it_answers_an_unknown_host_with_the_sites_own_400_page(client):
    response = client.get("/accounts/login/", HTTP_HOST="stories.evil.example")

    page = response.content.decode()
    assert response.status_code == 400
    assert _in_the_sites_look(page) and "Bad request" in page


@with_failing_views
def test_it_answers_a_failing_page_with_the_sites_own_500_page(alice):
    client = Client(raise_request_exception=False)
    client.force_login(alice)

    response = client.get("/broken/")

    page = response.content.decode()
    assert response.status_code == 500
    assert _in_the_sites_look(page) and "Something went wrong" in page
    assert "the database went away" not in page and "Traceback" not in page


def test_it_answers_an_address_the_api_does_not_have_in_json(alice_client):
    response = alice_client.get("/api/no-such-thing/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@with_failing_views
def test_it_answers_api_failures_in_json(alice):
    client = Client(raise_request_exception=False)
    client.force_login(alice)

    broken, forbidden = client.get("/api/broken/"), client.get("/api/forbidden/")

    assert broken.status_code == 500 and broken.json()["error"]["code"] == "internal"
    assert "the database went away" not in broken.content.decode()
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"


def test_it_answers_a_method_an_api_address_does_not_take_in_json(alice_client, story):
    response = alice_client.patch(f"/api/stories/{story.id}/", "{}", content_type="application/json")

    assert response.status_code == 405
    assert response.json()["error"] == {
        "code": "method_not_allowed",
        "message": "PATCH is not allowed here; use GET, PUT, DELETE.",
    }
    assert response["Allow"] == "GET, PUT, DELETE"
    # The site's security headers, as on every other answer.
    assert response["X-Content-Type-Options"] == "nosniff" and response["X-Frame-Options"] == "DENY"


def test_an_api_address_without_its_final_slash_is_named_not_redirected(alice_client):
    # A redirect would turn this POST into a GET elsewhere and lose its body.
    response = alice_client.post("/api/stories", '{"title": "New"}', content_type="application/json")

    assert response.status_code == 404
    assert response.json()["error"]["message"].endswith("did you mean /api/stories/?")


@with_failing_views
def test_with_debug_pages_on_the_api_still_answers_in_json(alice, settings):
    settings.DEBUG = True
    client = Client(raise_request_exception=False)
    client.force_login(alice)

    missing, broken = client.get("/api/no-such-thing/"), client.get("/api/broken/")
    slashless = client.post("/api/stories", '{"title": "New"}', content_type="application/json")
    assert slashless.status_code == 404 and slashless.json()["error"]["message"].endswith("did you mean /api/stories/?")

    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert broken.status_code == 500 and broken.json()["error"]["code"] == "internal"
    assert "the database went away" not in broken.content.decode()


def test_pages_outside_the_api_keep_their_redirects(alice_client):
    response = alice_client.get("/stories")

    assert response.status_code == 301 and response["Location"] == "/stories/"
