"""Debian's Chromium driven by Playwright, and what the browser tests share."""

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from django.test import Client
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

from generation import selectors
from generation.params import resolve_params, to_sampling
from generation.worker.engines import engines
from storyteller.stories.models import Story
from storyteller.stories.services import draft_save, story_create
from tests.engine.helpers import run

OPENING = "Once upon a time, there was a cat named Whiskers."

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def outside_the_event_loop(query):
    """Playwright's sync API runs an event loop in this thread, where Django refuses
    database calls; a plain thread has none."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(query).result()


@pytest.fixture
def browser():
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium package is needed for the browser tests (make test installs it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    """Opens pages (each in a context of its own: its own cookies) that fail the test if
    their scripts raise."""
    errors = []

    def open_page(context=None):
        page = (context or browser.new_context()).new_page()
        page.set_default_timeout(30_000)
        page.on("pageerror", lambda error: errors.append(f"{error}\n{error.stack}"))
        return page

    yield open_page
    assert not errors, f"the page raised: {errors}"


@pytest.fixture
def page(new_page):
    return new_page()


# The story's text as the editor holds it (Quill keeps a line break of its own at the end).
_STORY_TEXT = """() => {
    const quill = window.Quill && document.getElementById("story") && Quill.find(document.getElementById("story"));
    return quill && quill.getText ? quill.getText().slice(0, -1) : null;
}"""


def story_text(page) -> str:
    return page.evaluate(_STORY_TEXT)


def expect_story_text(page, expected: str, timeout: float = 30_000) -> None:
    """Waits until the editor holds exactly `expected`; fails with what it holds instead."""
    try:
        page.wait_for_function(f"expected => ({_STORY_TEXT})() === expected", arg=expected, timeout=timeout)
    except Exception:
        raise AssertionError(f"the story is {story_text(page)!r}, not {expected!r}") from None


def a_seed_that_writes_to_the_full_length(max_new_tokens: int | None = None) -> tuple[int, str]:
    """(seed, text): the tiny model is random and may end early; this finds a seed for
    which the editor's request for OPENING runs to its full length, and the text the
    worker will write. A long one gives Stop, or a closing tab, time to come first."""
    config = selectors.model_config_active()
    engine = engines.acquire(selectors.model_spec(config))
    editor_params = {"max_new_tokens": max_new_tokens or config.max_new_tokens, "temperature": config.temperature}
    for seed in range(50):
        params = resolve_params(
            defaults=config.default_params(), story_settings={"seed": seed}, requested=editor_params
        )
        finished = run(engine, OPENING, to_sampling(params))[2]
        if finished.reason == "length":
            return seed, finished.text
    raise AssertionError("no seed in 0..49 writes to the full length")


@pytest.fixture
def writer(alice):
    """(story, session cookie) of a writer with one story."""

    def make():
        story = story_create(owner=alice, title="Whiskers", text=OPENING)
        client = Client()
        client.force_login(alice)
        return story, client.cookies["sessionid"].value

    return outside_the_event_loop(make)


@contextmanager
def logged_in(browser, user, url):
    """A browser context holding `user`'s session on the site at `url`."""

    def login():
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": outside_the_event_loop(login), "url": url}])
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def context(writer, live_site, browser):
    """A browser context logged in as the writer."""
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": writer[1], "url": live_site}])
    yield context
    context.close()


def open_editor(new_page, context, live_site, story):
    page = new_page(context)
    page.goto(f"{live_site}/stories/{story.id}/")
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()
    return page


def open_at_the_end(new_page, context, url, story, **settings):
    """The editor with the cursor at the end of the story, after saving these settings."""
    outside_the_event_loop(
        lambda: draft_save(story=story, base_revision=Story.objects.get(pk=story.pk).revision, settings=settings)
    )
    page = open_editor(new_page, context, url, story)
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    return page


_ON_SCREEN = """at => {
  const quill = Quill.find(document.getElementById('story'));
  const top = quill.root.getBoundingClientRect().top + quill.getBounds(at).top;
  return top >= 0 && top < window.innerHeight;
}"""


def on_screen(page, index: int) -> bool:
    """Whether the line of the story's character at `index` is in the window."""
    return page.evaluate(_ON_SCREEN, index)


def leaving_asks_first(page) -> bool:
    """Whether closing the page now asks the writer first (the browser's "Leave site?"),
    which is then answered "stay": the page stays open."""
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.type), dialog.dismiss()))
    page.close(run_before_unload=True)
    # The page closes, or asks; either is heard while Playwright is called.
    deadline = time.monotonic() + 5
    while not asked and not page.is_closed() and time.monotonic() < deadline:
        try:
            page.wait_for_timeout(50)
        except PlaywrightError:
            break  # closed meanwhile
    if asked:
        page.wait_for_timeout(300)
        assert asked == ["beforeunload"] and not page.is_closed(), asked
    else:
        assert page.is_closed(), "the page neither closed nor asked"
    return bool(asked)


def generate_and_wait(page):
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gen-state")).to_have_text("Done", timeout=60_000)
