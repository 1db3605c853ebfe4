"""A writer's markup in a real browser: the editor, its panels and the shared page show it
as text and never run it."""

import re

import pytest
from django.test import Client
from playwright.sync_api import expect

from tests.e2e.conftest import outside_the_event_loop
from tests.test_escaping import XSS, hostile_story

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_editor_and_its_panels_never_run_a_writers_markup(alice, live_site, new_page, browser):
    def make():
        client = Client()
        client.force_login(alice)
        return hostile_story(alice), client.cookies["sessionid"].value

    story, session = outside_the_event_loop(make)
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": session, "url": live_site}])
    page = new_page(context)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{live_site}/stories/")
    expect(page.get_by_role("link", name=XSS)).to_be_visible()
    page.goto(f"{live_site}/stories/{story.id}/")
    expect(page.get_by_label("Title")).to_have_value(XSS)
    expect(page.get_by_role("textbox", name="Story")).to_contain_text(XSS)
    for panel in ("Memory", "Lorebook", "What the model saw", "History"):
        page.get_by_role("button", name=panel, exact=True).click()
    page.get_by_role("button", name=re.compile("^Revision 1")).click()
    expect(page.locator("#history-preview-text")).to_contain_text(XSS)
    expect(page.get_by_label("Memory text")).to_have_value(XSS)
    reader = new_page()
    reader.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    reader.goto(f"{live_site}/s/{story.share_token}/")
    expect(reader.get_by_role("heading", name=XSS)).to_be_visible()

    for p in (page, reader):
        assert p.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    assert dialogs == []
    context.close()
