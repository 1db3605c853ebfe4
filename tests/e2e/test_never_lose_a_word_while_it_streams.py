"""What a writer must never lose while the model writes, in a real browser, on a site whose
model streams a long continuation for several seconds: a continuation across a reload,
one undo step however long it streams, and a Stop pressed before the server answers."""

import re
import time
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from generation.models import Generation
from storyteller.stories.models import Story
from storyteller.stories.services import draft_save, story_create
from storyteller.stories.text import utf16_length
from tests.e2e.conftest import (
    OPENING,
    expect_story_text,
    generate_and_wait,
    logged_in,
    open_at_the_end,
    outside_the_event_loop,
)
from tests.sites import Site

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

db = outside_the_event_loop


@pytest.fixture
def slow_site(slow_model_dir):
    """The base URL of a site whose model streams a long continuation for several seconds."""
    site = Site(slow_model_dir)
    yield site.ws_url.replace("ws://", "http://")
    site.close()


@pytest.fixture
def slow_context(alice, slow_site, browser):
    """A browser context logged in as alice on the slow site."""
    with logged_in(browser, alice, slow_site) as context:
        yield context


def test_a_reload_while_the_model_writes_keeps_every_word_and_conflicts_with_nothing(
    alice, slow_site, slow_context, new_page
):
    context = slow_context
    story = db(lambda: story_create(owner=alice, title="Whiskers", text=OPENING))
    # About 2,000 characters, a third of them before the reload: the slow model writes them
    # in 20 to 40 s (1,024 tokens took over a minute on a busy 2-core machine).
    page = open_at_the_end(new_page, context, slow_site, story, max_new_tokens=600, seed=1)
    page.get_by_role("button", name="Generate").click()
    # Several seconds of words, some of them saved by autosave.
    deadline = time.monotonic() + 30
    while len(db(lambda: Story.objects.get(pk=story.pk).text)) < len(OPENING) + 200:
        assert time.monotonic() < deadline, "autosave put none of the continuation on the server"
        page.wait_for_timeout(200)
    page.wait_for_function("n => document.querySelector('.model-text')?.textContent.length > n", arg=1000)

    # The leaving page's saves (its keep-alive save among them) land only once the new page
    # has loaded the story: as on a busy server, where they can come in either order.
    held, leaving = [], [True]
    context.route(
        re.compile(r"/api/stories/\d+/$"),
        lambda route: held.append(route) if leaving[0] and route.request.method == "PUT" else route.continue_(),
    )
    page.reload()
    leaving[0] = False
    expect(page.locator("#gen-state")).to_have_text(re.compile("Writing|Reconnected"))
    assert held, "the page sent no save as it left"
    for route in held:
        try:
            route.continue_()
        except Exception:
            pass  # a save the leaving page gave up; the browser's backup has its words

    expect(page.locator("#gen-state")).to_have_text("Done", timeout=90_000)
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    expect(page.locator("#conflict")).to_be_hidden()
    generation = db(Generation.objects.get)
    assert generation.finish_reason == "length"
    expect_story_text(page, OPENING + generation.output)
    saved = db(lambda: Story.objects.get(pk=story.pk))
    assert saved.text == OPENING + generation.output
    assert saved.model_spans == [[utf16_length(OPENING), utf16_length(OPENING + generation.output)]]


def test_a_long_continuation_is_one_undo_step(alice, slow_site, slow_context, new_page):
    story = db(lambda: story_create(owner=alice, title="Whiskers", text=OPENING))
    page = open_at_the_end(new_page, slow_context, slow_site, story, max_new_tokens=400, seed=1)
    page.keyboard.type(" Mine.")
    page.wait_for_timeout(1_100)  # a pause: the typing is a step of its own

    generate_and_wait(page)
    generation = db(Generation.objects.get)
    assert generation.finished_at - generation.started_at > timedelta(seconds=2)
    page.get_by_role("button", name="Undo").click()

    expect_story_text(page, OPENING + " Mine.")


def test_stop_pressed_before_the_server_answers_is_shown_and_taken(alice, slow_site, slow_context, new_page):
    story = db(lambda: story_create(owner=alice, title="Whiskers", text=OPENING))
    db(lambda: draft_save(story=story, base_revision=1, settings={"max_new_tokens": 1024, "seed": 1}))
    # A slow network: what the server says is held back until the test lets it through.
    held, sockets, holding = [], [], [True]

    def slow_replies(socket):
        server = socket.connect_to_server()
        server.on_message(lambda message: held.append(message) if holding[0] else socket.send(message))
        sockets.append(socket)

    page = new_page(slow_context)
    page.route_web_socket(re.compile("/ws/"), slow_replies)
    page.goto(f"{slow_site}/stories/{story.id}/")
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()
    page.get_by_role("button", name="Generate").click()
    deadline = time.monotonic() + 30
    while db(Generation.objects.first) is None:
        said = page.locator("#gen-state").text_content()
        assert time.monotonic() < deadline, f"the generate request never reached the server; the editor says {said!r}"
        # Not time.sleep: the test's own Python forwards the page's messages to the server,
        # and it does so only while Playwright is called.
        page.wait_for_timeout(50)

    page.keyboard.press("Escape")

    expect(page.locator("#gen-state")).to_have_text("Stopping...")
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    holding[0] = False
    for message in held:
        sockets[-1].send(message)
    expect(page.locator("#gen-state")).to_have_text("Stopped", timeout=30_000)
    generation = db(Generation.objects.get)
    assert generation.finish_reason == "cancelled" and generation.new_tokens < 1024
    expect_story_text(page, OPENING + generation.output)
