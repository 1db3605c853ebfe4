"""The staff dashboard in a real browser: its four charts draw the figures the server
computed, errors included, and each live worker's KV cache is shown as it reported it."""

import json
from socket import gethostname

import pytest
from django.test import Client
from playwright.sync_api import expect

from generation.models import Generation, Worker
from storyteller.stories.services import story_create
from tests.e2e.conftest import outside_the_event_loop

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_dashboard_draws_its_charts_from_the_servers_figures(
    admin_user, alice, live_site, celery_worker, browser, new_page
):
    def make():
        from django.utils import timezone

        story = story_create(owner=alice, title="Whiskers", text="")
        now = timezone.now()
        Generation.objects.create(
            story=story,
            user=alice,
            seed=1,
            status="finished",
            new_tokens=600,
            ttft_ms=300,
            started_at=now,
            finished_at=now,
        )
        Generation.objects.create(
            story=story,
            user=alice,
            seed=2,
            status="finished",
            finish_reason="error",
            error_message="the worker stopped",
            started_at=now,
            finished_at=now,
        )
        # A second worker, beside the site's own, whose cache is half used and often hit.
        Worker.objects.create(
            name="host-b:12",
            state="ready",
            kv_cache={
                "held_tokens": 160,
                "cached_tokens": 12_800,
                "budget_tokens": 32_768,
                "prompt_tokens": 1000,
                "found_tokens": 640,
            },
            last_heartbeat=now,
        )
        client = Client()
        client.force_login(admin_user)
        return client.cookies["sessionid"].value

    session = outside_the_event_loop(make)
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": session, "url": live_site}])
    page = new_page(context)
    page.goto(f"{live_site}/staff/dashboard/")
    expect(page.locator("#now")).to_contain_text("worker")
    expect(page.locator(".dashboard")).to_have_attribute("data-loaded-window", "hour")

    served = json.loads(page.evaluate("fetch('/staff/dashboard/data?window=hour').then(r => r.text())"))
    drawn = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('canvas')].map(c => {
            const chart = Chart.getChart(c);
            return [c.id, {labels: chart.data.labels.length, data: chart.data.datasets.map(d => d.data),
                           width: c.width, height: c.height}];
        }))"""
    )
    assert drawn["chart-tokens"]["data"][0] == served["series"]["tokens_per_s"]
    assert sum(drawn["chart-tokens"]["data"][0]) == 10.0  # 600 tokens in one minute
    assert drawn["chart-generations"]["data"] == [
        served["series"]["generations_per_min"],
        served["series"]["errors_per_min"],
    ]
    assert sum(drawn["chart-generations"]["data"][1]) == 1  # the one that ended in an error
    assert drawn["chart-ttft"]["data"] == [served["series"]["ttft_p50_ms"], served["series"]["ttft_p95_ms"]]
    assert drawn["chart-queue"]["data"] == [served["series"]["queued"], served["series"]["running"]]
    assert all(chart["labels"] == 60 and chart["width"] > 100 and chart["height"] > 50 for chart in drawn.values())

    caches = page.locator("#kv-cache tbody tr")
    expect(caches.filter(has_text="host-b:12").locator("td")).to_have_text(
        ["host-b:12", "12,800 of 32,768 positions (39%)", "160 positions", "64% (640 of 1,000)"]
    )
    # The site's own worker, with the engine's default budget, once it has loaded the model.
    own = caches.filter(has_text=f"{gethostname()}:{celery_worker.proc.pid}:").locator("td")
    expect(own.nth(1)).to_contain_text("of 32,768 positions", timeout=30_000)

    page.get_by_label("last day").check()
    expect(page.locator(".dashboard")).to_have_attribute("data-loaded-window", "day")
    assert page.evaluate("Chart.getChart(document.getElementById('chart-tokens')).data.labels.length") == 96
    context.close()
