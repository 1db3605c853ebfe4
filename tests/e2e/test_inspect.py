"""The Inspect panel in a real browser: tokens, the attention heatmap, neighbours and the
map, answered by the worker for the writer's own selection."""

import json
import re

import pytest
from playwright.sync_api import expect

from generation import selectors
from generation.worker.engines import engines
from tests.e2e.conftest import OPENING, open_editor, outside_the_event_loop

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SELECT = """n => {
    const quill = Quill.find(document.getElementById("story"));
    quill.setSelection(0, n, "user");
}"""


def test_the_writer_sees_tokens_attention_and_embeddings_of_their_selection(writer, new_page, context, live_site):
    page = open_editor(new_page, context, live_site, writer[0])
    page.evaluate(SELECT, len(OPENING))
    page.get_by_role("button", name="Inspect", exact=True).click()
    panel = page.get_by_role("region", name="Inspect panel")

    panel.get_by_role("button", name="Tokens").click()
    tokenizer = outside_the_event_loop(
        lambda: engines.acquire(selectors.model_spec(selectors.model_config_active())).tokenizer
    )
    expected = tokenizer(OPENING, add_special_tokens=False)["input_ids"]
    expect(panel.locator(".token-chip")).to_have_count(len(expected))
    assert panel.locator(".token-id").all_text_contents() == [str(i) for i in expected]

    panel.get_by_role("button", name="Attention").click()
    expect(panel.locator(".heatmap .token-chip.chosen")).to_have_count(1)
    weights = [
        float(w) for w in panel.locator(".heatmap .token-chip").evaluate_all("cs => cs.map(c => c.dataset.weight)")
    ]
    assert sum(weights) == pytest.approx(1.0, abs=1e-3)
    panel.locator(".heatmap .token-chip").nth(3).click()  # look from the fourth token
    expect(panel.locator(".heatmap .token-chip").nth(3)).to_have_class("token-chip chosen")
    later = panel.locator(".heatmap .token-chip.later").evaluate_all("cs => cs.map(c => Number(c.dataset.weight))")
    assert later and all(w == 0 for w in later)
    panel.get_by_label("Head").select_option("1")
    panel.get_by_label("Layer").select_option("1")
    expect(panel.locator("#inspect-result")).to_contain_text("in layer 2")

    panel.get_by_label("Words to look up").fill("cat sea boats")
    panel.get_by_role("button", name="Neighbours").click()
    expect(panel.locator(".neighbours li")).to_have_count(10)
    panel.get_by_role("button", name="Map").click()
    expect(panel.locator("#inspect-map-chart")).to_be_visible()
    points = page.evaluate("Chart.getChart(document.getElementById('inspect-map-chart')).data.datasets[0].data.length")
    assert points == 3
    panel.get_by_text("What am I looking at?").click()
    # The guide's examples come from what the writer looked at.
    guide = panel.locator(".guide")
    expect(guide).to_contain_text(f"In your passage: {len(expected)} tokens;")
    expect(guide).to_contain_text("In your passage: in layer 2,")
    expect(guide).to_contain_text('Yours: "cat" is nearest to')
    expect(guide).to_contain_text("are the closest pair.")


def test_without_a_selection_the_panel_says_what_to_do(writer, new_page, context, live_site):
    page = open_editor(new_page, context, live_site, writer[0])
    page.get_by_role("button", name="Inspect", exact=True).click()
    page.get_by_role("button", name="Tokens").click()
    expect(page.locator("#inspect-state")).to_have_text("Select a passage in the story first.")


def test_the_maps_labels_never_cover_one_another(writer, new_page, context, live_site):
    page = open_editor(new_page, context, live_site, writer[0])
    page.get_by_role("button", name="Inspect", exact=True).click()
    panel = page.get_by_role("region", name="Inspect panel")
    words = "king queen prince princess cat dog sea boats harbour storm rain wind lamp light night day"
    panel.get_by_label("Words to look up").fill(words)
    panel.get_by_role("button", name="Map").click()
    chart = panel.locator("#inspect-map-chart")
    expect(chart).to_have_attribute("data-labels", re.compile(r"^\[.+\]$"))

    boxes = json.loads(chart.get_attribute("data-labels"))
    assert sorted(box["word"] for box in boxes) == sorted(words.split())
    for n, a in enumerate(boxes):
        for b in boxes[n + 1 :]:
            apart = (
                a["left"] + a["width"] <= b["left"] + 0.5
                or b["left"] + b["width"] <= a["left"] + 0.5
                or a["top"] + a["height"] <= b["top"] + 0.5
                or b["top"] + b["height"] <= a["top"] + 0.5
            )
            assert apart, (a, b)
