"""The story's tree in a real browser, on a story of a few thousand words: every try is kept
on the server, the alternatives come back after a reload, and any try can be opened,
compared with the text and made current, which Undo takes back."""

import json
import time

import pytest
from playwright.sync_api import expect

from generation.management.prose import join, story_sentences
from storyteller.stories.models import Story
from storyteller.stories.services import draft_save
from tests.e2e.conftest import (
    expect_story_text,
    generate_and_wait,
    on_screen,
    open_at_the_end,
    outside_the_event_loop,
    story_text,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

db = outside_the_event_loop


def a_long_story(story, number: int) -> str:
    """The writer's story made about 2,500 words long; returns its text."""
    text = join(story_sentences(number, 200))
    db(lambda: draft_save(story=story, base_revision=Story.objects.get(pk=story.pk).revision, text=text))
    return text


def tree_of(story) -> list[tuple]:
    return db(lambda: list(Story.objects.get(pk=story.pk).tree.values_list("id", "parent_id", "group", "kind")))


def current_node(story):
    return db(lambda: Story.objects.get(pk=story.pk).tree_node_id)


def expect_current_saved(story, node_id: int, timeout: float = 10.0):
    """The server's current try becomes `node_id` (the editor puts it after showing it)."""
    deadline = time.monotonic() + timeout
    while current_node(story) != node_id and time.monotonic() < deadline:
        time.sleep(0.1)
    assert current_node(story) == node_id


def expect_current_settles(page, story, node_id: int, still: float = 2.0, timeout: float = 20.0):
    """The server's current try stays the same for `still` seconds, and is `node_id` (a
    moment's value may be one a change still on its way replaces)."""
    deadline = time.monotonic() + timeout
    seen, since = current_node(story), time.monotonic()
    while time.monotonic() - since < still and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        if (now := current_node(story)) != seen:
            seen, since = now, time.monotonic()
    assert seen == node_id


def retry_and_wait(page, position: str):
    page.get_by_role("button", name="Retry", exact=True).click()
    expect(page.locator("#alt-position")).to_have_text(position, timeout=60_000)
    expect(page.locator("#gen-state")).to_have_text("Done")


def test_retries_are_kept_in_the_tree_and_come_back_after_a_reload(writer, new_page, context, live_site):
    story = writer[0]
    opening = a_long_story(story, 7)
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=60)
    generate_and_wait(page)
    first = story_text(page)[len(opening) :]
    retry_and_wait(page, "2 of 2")
    second = story_text(page)[len(opening) :]
    retry_and_wait(page, "3 of 3")
    third = story_text(page)[len(opening) :]
    assert len({first, second, third}) == 3
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)

    nodes = tree_of(story)
    assert [kind for *_, kind in nodes] == ["generation", "retry", "retry"]
    assert {group for _, _, group, _ in nodes} == {nodes[0][0]} and {parent for _, parent, *_ in nodes} == {None}
    assert current_node(story) == nodes[2][0]

    # The alternatives were the page's; now they are the tree's, and survive a reload.
    page.reload()
    expect(page.locator("#alt-position")).to_have_text("3 of 3")
    expect(page.get_by_role("button", name="Retry", exact=True)).to_be_enabled()
    page.get_by_role("button", name="Previous continuation", exact=True).click()
    expect_story_text(page, opening + second)
    page.get_by_role("button", name="Previous continuation", exact=True).click()
    expect_story_text(page, opening + first)
    expect(page.locator("#alt-position")).to_have_text("1 of 3")
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert db(lambda: Story.objects.get(pk=story.pk).text) == opening + first
    # The browsed alternative is the tree's current try, on this visit and the next.
    page.wait_for_timeout(500)
    assert current_node(story) == nodes[0][0]

    page.get_by_role("button", name="Tree", exact=True).click()
    rows = page.locator("#tree-list button[data-node]")
    expect(rows).to_have_count(3)
    kinds = page.locator("#tree-list .tree-kind")
    expect(kinds).to_have_text(["Generated", "Retry", "Retry"])
    expect(page.locator("#tree-list [aria-current=true]")).to_have_attribute("data-node", str(nodes[0][0]))


def test_a_try_opened_in_the_tree_is_compared_and_made_current_and_undo_takes_it_back(
    writer, new_page, context, live_site
):
    story = writer[0]
    opening = a_long_story(story, 8)
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=60)
    generate_and_wait(page)
    first = story_text(page)[len(opening) :]
    # Going on from the first try, then retrying that: first -> (next, next retried).
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    generate_and_wait(page)
    following = story_text(page)[len(opening + first) :]
    retry_and_wait(page, "2 of 2")
    retried = story_text(page)[len(opening + first) :]
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    nodes = tree_of(story)
    assert [(parent, kind) for _, parent, _, kind in nodes] == [
        (None, "generation"),
        (nodes[0][0], "generation"),
        (nodes[0][0], "retry"),
    ]

    page.get_by_role("button", name="Tree", exact=True).click()
    rows = page.locator("#tree-list button[data-node]")
    expect(rows).to_have_count(3)
    # The path the text follows: the first try and the retry, not the try it replaced.
    on_path = page.locator("#tree-list li.on-path > button")
    expect(on_path).to_have_count(2)
    expect(on_path.nth(1)).to_have_attribute("aria-current", "true")
    expect(page.locator(f'#tree-list li:not(.on-path) > button[data-node="{nodes[1][0]}"]')).to_have_count(1)

    page.locator(f'#tree-list button[data-node="{nodes[0][0]}"]').click()
    expect(page.locator("#tree-preview-text mark")).to_have_text(first)
    page.get_by_role("button", name="Compare with current", exact=True).click()
    # From the text now to the first try's: the retried words would go (with the word they
    # ended, when the model went on in the middle of one), and only that word would come,
    # which may begin in the opening when the first try went on in the middle of a word.
    expect(page.locator("#tree-diff del").first).to_be_visible()
    expect(page.locator("#tree-diff .diff")).to_be_in_viewport()
    removed = "".join(page.locator("#tree-diff del").all_text_contents())
    added = "".join(page.locator("#tree-diff ins").all_text_contents())
    assert removed.rstrip().endswith(retried.strip())
    assert (opening + first).endswith(added) and len(added.split()) <= 1, added

    # The writer reads the story's start meanwhile; the try's words are brought into view.
    page.evaluate("() => window.scrollTo(0, 0)")
    page.get_by_role("button", name="Make current", exact=True).click()
    expect_story_text(page, opening + first)
    assert on_screen(page, len(opening + first) - 1)
    expect(page.locator("#tree-list [aria-current=true]")).to_have_attribute("data-node", str(nodes[0][0]))
    # The comparison left open follows the text: nothing between them now.
    expect(page.locator("#tree-diff .diff")).to_have_text("The two are the same.")
    expect(page.get_by_role("button", name="Retry", exact=True)).to_be_enabled()
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert db(lambda: Story.objects.get(pk=story.pk).text) == opening + first

    # Undo and Redo take the tree's current try back and forth with the text.
    current = page.locator("#tree-list [aria-current=true]")
    page.get_by_role("button", name="Undo", exact=True).click()
    expect_story_text(page, opening + first + retried)
    expect(current).to_have_attribute("data-node", str(nodes[2][0]))
    expect(page.locator("#tree-diff del").first).to_be_visible()
    assert "".join(page.locator("#tree-diff del").all_text_contents()).rstrip().endswith(retried.strip())
    expect_current_saved(story, nodes[2][0])
    # With the retry back, so are its arrows and Retry.
    expect(page.locator("#alt-position")).to_have_text("2 of 2")
    expect(page.get_by_role("button", name="Retry", exact=True)).to_be_enabled()
    page.get_by_role("button", name="Redo", exact=True).click()
    expect_story_text(page, opening + first)
    expect(current).to_have_attribute("data-node", str(nodes[0][0]))
    # A try made from there goes on from the one made current, at the place of the two
    # after it: the arrows show all three.
    page.get_by_role("textbox", name="Story").focus()
    page.keyboard.press("Control+End")
    generate_and_wait(page)
    expect(rows).to_have_count(4)
    newest = tree_of(story)[-1]
    assert newest[1] == nodes[0][0] and newest[2] == nodes[1][2]
    expect(page.locator("#alt-position")).to_have_text("3 of 3")
    newest_text = story_text(page)
    # Undo takes that try away, back to the one made current; Redo brings it back, current.
    page.get_by_role("button", name="Undo", exact=True).click()
    expect_story_text(page, opening + first)
    expect(current).to_have_attribute("data-node", str(nodes[0][0]))
    page.get_by_role("button", name="Redo", exact=True).click()
    expect_story_text(page, newest_text)
    expect(current).to_have_attribute("data-node", str(newest[0]))
    expect_current_saved(story, newest[0])
    expect(page.locator("#alt-position")).to_have_text("3 of 3")
    page.get_by_role("button", name="Previous continuation", exact=True).click()
    expect_story_text(page, opening + first + retried)
    assert following != retried


def wait_for(page, condition, timeout: float = 30.0):
    """Waits for `condition`, the page's requests (and their routes) going on meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert condition()


def test_tries_the_server_could_not_take_are_sent_again_in_order_once_it_is_back(writer, new_page, context, live_site):
    story = writer[0]
    a_long_story(story, 3)
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=30)
    refused = []
    body = json.dumps({"error": {"code": "unavailable", "message": "Down for a moment."}})

    def unavailable(route):
        if route.request.method == "POST" and route.request.url.endswith("/tree/"):
            refused.append(route.request.url)
            if len(refused) == 1:
                # The first reaches the server, but its answer is lost on the way back.
                route.fetch()
                return route.fulfill(status=504, content_type="application/json", body=body)
            return route.fulfill(status=503, content_type="application/json", body=body)
        return route.continue_()

    # The site restarts behind its proxy while a try and its retry are written.
    context.route("**/api/stories/**", unavailable)
    generate_and_wait(page)
    retry_and_wait(page, "2 of 2")
    wait_for(page, lambda: len(refused) >= 3)
    assert len(tree_of(story)) == 1
    context.unroute("**/api/stories/**")

    # Both are saved once it is back, the first once, the retry after the try it replaced, as
    # its alternative.
    wait_for(page, lambda: len(tree_of(story)) == 2)
    nodes = tree_of(story)
    assert [(parent, kind) for _, parent, _, kind in nodes] == [(None, "generation"), (None, "retry")]
    assert nodes[1][2] == nodes[0][0]
    expect_current_saved(story, nodes[1][0])
    page.get_by_role("button", name="Tree", exact=True).click()
    expect(page.locator("#tree-list button[data-node]")).to_have_count(2)


def test_a_version_browsed_back_to_while_it_was_on_its_way_ends_as_the_current_try(
    writer, new_page, context, live_site
):
    story = writer[0]
    opening = a_long_story(story, 5)
    page = open_at_the_end(new_page, context, live_site, story, max_new_tokens=30)
    generate_and_wait(page)
    retry_and_wait(page, "2 of 2")
    wait_for(page, lambda: len(tree_of(story)) == 2)
    refused = []
    body = json.dumps({"error": {"code": "unavailable", "message": "Down for a moment."}})

    def unavailable(route):
        if route.request.method == "POST" and route.request.url.endswith("/tree/"):
            refused.append(route.request.url)
            return route.fulfill(status=503, content_type="application/json", body=body)
        return route.continue_()

    # The third version's try cannot be saved for now; the writer looks back at the first
    # two, which are, and returns to the third before it is.
    context.route("**/api/stories/**", unavailable)
    retry_and_wait(page, "3 of 3")
    third = story_text(page)[len(opening) :]
    wait_for(page, lambda: len(refused) >= 1)
    for button, position in (("Previous", "2 of 3"), ("Previous", "1 of 3"), ("Next", "2 of 3"), ("Next", "3 of 3")):
        page.get_by_role("button", name=f"{button} continuation", exact=True).click()
        expect(page.locator("#alt-position")).to_have_text(position)
    expect_story_text(page, opening + third)
    context.unroute("**/api/stories/**")

    # Once the server is back, the try the writer is looking at is the current one, and
    # stays so once every change the page queued has landed.
    wait_for(page, lambda: len(tree_of(story)) == 3)
    expect_current_settles(page, story, tree_of(story)[2][0])
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=15_000)
    assert db(lambda: Story.objects.get(pk=story.pk).text) == opening + third
