"""The site as `make run` serves it: Daphne with no DJANGO_ variables set, over plain HTTP.
Static files, the icon and the error pages come from the real ASGI application."""

import asyncio
import json
import urllib.error
import urllib.request

import pytest
import websockets
from channels.db import database_sync_to_async

from storyteller.stories import services
from tests.generation.conftest import session_headers
from tests.harness.processes import start_web, subprocess_env


@pytest.fixture(scope="module")
def site(django_db_setup, django_db_blocker):
    env = {name: value for name, value in subprocess_env().items() if not name.startswith("DJANGO_")}
    server, url = start_web(env)
    yield url
    server.stop()


def _get(url: str):
    """(status, headers, body) of a GET, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.mark.django_db(transaction=True)
def test_it_answers_a_revoked_share_link_without_a_debug_page(site, story):
    shared = services.share_enable(story)
    link = f"{site}/s/{shared.share_token}/"
    assert _get(link)[0] == 200
    services.share_revoke(shared)

    status, headers, body = _get(link)

    page = body.decode()
    assert status == 404
    assert 'class="site-header"' in page and "Page not found" in page
    assert "staff/" not in page and "DEBUG = True" not in page


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/css/site.css", "text/css"),
        ("/static/js/editor.js", "text/javascript"),
        ("/static/vendor/quill-2.0.3/quill.js", "text/javascript"),
        ("/static/admin/css/base.css", "text/css"),
    ],
)
def test_it_serves_static_files_for_browsers_to_keep(site, path, content_type):
    status, headers, body = _get(site + path)

    assert status == 200 and headers["Content-Type"].startswith(content_type) and body
    assert "max-age=" in headers.get("Cache-Control", "")


def test_it_serves_the_icon_its_pages_name(site):
    status, headers, login_page = _get(f"{site}/accounts/login/")
    assert status == 200 and b'<link rel="icon" href="/favicon.ico">' in login_page

    status, headers, icon = _get(f"{site}/favicon.ico")

    assert status == 200
    assert headers["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert icon.startswith(b"\x00\x00\x01\x00")  # the ICO file signature


async def _handshake(site, user, story, origin=None):
    """The story socket of `user`'s session, opened as a script would: with an Origin header
    only when one is given."""
    cookie = dict((k.decode(), v.decode()) for k, v in await database_sync_to_async(session_headers)(user))["cookie"]
    url = site.replace("http://", "ws://") + f"/ws/stories/{story.id}/"
    return await websockets.connect(url, additional_headers={"Cookie": cookie}, origin=origin)


@pytest.mark.django_db(transaction=True)
async def test_a_script_without_an_origin_header_gets_the_story_socket(site, alice, story):
    socket = await _handshake(site, alice, story)
    await socket.send(json.dumps({"type": "dance"}))
    answer = json.loads(await asyncio.wait_for(socket.recv(), 30))
    await socket.close()
    assert answer == {"type": "error", "code": "invalid", "message": "Unknown message type 'dance'."}


@pytest.mark.django_db(transaction=True)
async def test_a_page_on_another_site_is_still_refused_the_socket(site, alice, story):
    with pytest.raises(websockets.InvalidStatus) as refused:
        await _handshake(site, alice, story, origin="http://evil.example")
    assert refused.value.response.status_code == 403


@pytest.mark.django_db(transaction=True)
async def test_without_a_session_a_script_is_refused_the_socket_too(site, story):
    url = site.replace("http://", "ws://") + f"/ws/stories/{story.id}/"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    ("path", "status", "code"), [("/api/no-such-thing/", 404, "not_found"), ("/api/stories", 404, "not_found")]
)
def test_the_api_answers_an_address_it_does_not_have_in_json(site, path, status, code):
    answer_status, headers, body = _get(site + path)

    assert (answer_status, headers["Content-Type"]) == (status, "application/json")
    assert json.loads(body)["error"]["code"] == code
