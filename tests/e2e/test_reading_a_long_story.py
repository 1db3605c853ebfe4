"""A writer with a long story sees how far the model has read it before the words come,
in a real browser, on a site whose worker reads a prompt in small pieces with the slow
model (a second or more for its 2,048-token window here). Each test writes another story:
the worker keeps what it read, and would not read the same story twice."""

import re

import pytest
from playwright.sync_api import expect

from generation.management.prose import join, story_sentences
from generation.models import Generation
from storyteller.stories.models import Story
from storyteller.stories.services import story_create
from tests.e2e.conftest import expect_story_text, logged_in, open_at_the_end, outside_the_event_loop
from tests.sites import Site

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

db = outside_the_event_loop

READING = re.compile(r"^Reading your story\.\.\. (\d+)%$")

# Every text the status line shows, in order, from the moment this is evaluated.
RECORD_STATUS = """() => {
    const status = document.getElementById("gen-state");
    window.statusShown = [];
    new MutationObserver(() => window.statusShown.push(status.textContent))
        .observe(status, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def reading_site(django_db_setup, django_db_blocker, slow_model_dir):
    """The base URL of a site whose worker reads a prompt 16 tokens at a time."""
    site = Site(slow_model_dir, env={"STORYTELLER_MAX_PREFILL_TOKENS": "16"})
    yield site.ws_url.replace("ws://", "http://")
    site.close()


@pytest.fixture
def reading_context(alice, reading_site, browser):
    with logged_in(browser, alice, reading_site) as context:
        yield context


def a_long_story(alice, number: int) -> Story:
    """About 2,500 words: more than the model's window, which the prompt fills to about
    three quarters."""
    return db(lambda: story_create(owner=alice, title="The harbour", text=join(story_sentences(number, 200))))


def test_the_status_says_how_far_the_story_is_read_then_the_words_stream(
    alice, reading_site, reading_context, new_page
):
    story = a_long_story(alice, 4)
    page = open_at_the_end(new_page, reading_context, reading_site, story, max_new_tokens=40, seed=1)
    page.evaluate(RECORD_STATUS)
    page.get_by_role("button", name="Generate").click()

    expect(page.locator("#gen-state")).to_have_text(READING, timeout=30_000)
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)

    generation = db(Generation.objects.get)
    assert generation.finish_reason == "length" and generation.output
    expect_story_text(page, story.text + generation.output)
    # The story is longer than the window: the editor says how much of it the model read.
    kept = sum(part["tokens"] for part in generation.context["parts"] if part["kind"] == "story")
    total = kept + generation.context["trimmed_tokens"]
    assert generation.context["trimmed_tokens"] > 0
    expect(page.locator("#window-note")).to_contain_text(f"it read the last {kept:,} of its {total:,} tokens")
    shown = page.evaluate("() => window.statusShown")
    percents = [int(m.group(1)) for m in map(READING.match, shown) if m]
    # Several steps forward, never back, and the words after the last of them.
    assert len(set(percents)) >= 2 and percents == sorted(percents), shown
    last_reading = max(i for i, text in enumerate(shown) if READING.match(text))
    assert "Writing..." in shown[last_reading:], shown


def test_stop_while_the_story_is_read_stops_it_with_nothing_written(alice, reading_site, reading_context, new_page):
    story = a_long_story(alice, 5)
    # A slow network on the way to the server: the Stop is held back for a second, while
    # the model goes on reading and saying so.
    servers, held, holding = [], [], [True]

    def slow_requests(socket):
        server = socket.connect_to_server()
        servers.append(server)

        def to_server(message):
            if holding[0] and '"cancel"' in message:
                held.append(message)
            else:
                server.send(message)

        socket.on_message(to_server)

    reading_context.route_web_socket(re.compile("/ws/"), slow_requests)
    page = open_at_the_end(new_page, reading_context, reading_site, story, max_new_tokens=40, seed=1)
    page.evaluate(RECORD_STATUS)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gen-state")).to_have_text(READING, timeout=30_000)

    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#gen-state")).to_have_text("Stopping...")
    # Held long enough to be seen, not so long that a fast machine reads the story meanwhile.
    page.wait_for_timeout(300)
    holding[0] = False
    assert held, "the page sent no cancel"
    for message in held:
        servers[-1].send(message)

    expect(page.locator("#gen-state")).to_have_text("Stopped", timeout=30_000)
    shown = page.evaluate("() => window.statusShown")
    stopping = shown.index("Stopping...")
    assert not any(READING.match(text) for text in shown[stopping:]), shown
    generation = db(Generation.objects.get)
    assert (generation.finish_reason, generation.output) == ("cancelled", "")
    expect_story_text(page, story.text)
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()
