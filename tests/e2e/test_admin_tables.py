"""The admin's busiest lists in a real browser at a laptop's width (1280 x 800): every
column can be read without the page itself scrolling sideways."""

import pytest
from django.test import Client

from generation import services
from generation.models import Generation, TrainingJob, Worker
from tests.e2e.conftest import outside_the_event_loop

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LISTS = ["worker", "generation", "trainingjob"]

# Where the list's table ends, the box that holds it, and the page.
EDGES = """() => {
    const table = document.getElementById("result_list").getBoundingClientRect();
    const box = document.querySelector("#changelist-form .results");
    return {table: table.right, box: box.getBoundingClientRect().right, scrolls: box.scrollWidth > box.clientWidth,
            page: document.documentElement.scrollWidth, viewport: window.innerWidth};
}"""


def busy_site(admin_user, alice):
    """Rows as a site that has run for a while has them: long names, errors, finished jobs."""
    from datetime import timedelta

    from django.utils import timezone

    from storyteller.stories.services import story_create

    now = timezone.now()
    for n in range(3):
        Worker.objects.create(
            name=f"storyteller-worker-{n}.internal.example.org:{40000 + n}",
            state="error" if n == 2 else "ready",
            config_name="Lighthouse keeper (job 12, 400 steps)",
            model_name="HuggingFaceTB/SmolLM2-135M-Instruct+job-12-lighthouse-keeper",
            dtype="bfloat16",
            device="cuda:0",
            load_seconds=12.3,
            live_requests=7,
            loading="Lighthouse keeper (job 13, 800 steps)" if n == 1 else "",
            error="Lighthouse keeper (job 13, 800 steps): CUDA out of memory. Tried to allocate 2.00 GiB" if n else "",
            last_heartbeat=now - timedelta(hours=n),
        )
    story = story_create(owner=alice, title="The lighthouse keeper who counted the gulls at dawn", text="")
    for n in range(5):
        Generation.objects.create(
            story=story,
            user=alice,
            seed=n,
            status="finished",
            finish_reason="error" if n % 2 else "length",
            error_message="the worker stopped",
            model_name="HuggingFaceTB/SmolLM2-135M-Instruct+job-12-lighthouse-keeper",
            new_tokens=512,
            ttft_ms=231.0,
            tokens_per_s=41.7,
            started_at=now,
            finished_at=now + timedelta(seconds=12),
        )
    base = services.model_config_active_saved()
    for n in range(3):
        TrainingJob.objects.create(
            name=f"Lighthouse keeper, in the style of the gull stories {n}",
            base=base,
            status="finished",
            step=400,
            steps=400,
            evaluations=[[0, 2.1, 8.17], [400, 1.2, 3.32]],
        )
    client = Client()
    client.force_login(admin_user)
    return client.cookies["sessionid"].value


@pytest.mark.parametrize("name", LISTS)
def test_it_fits_the_list_in_a_laptops_width(admin_user, alice, live_site, browser, new_page, name, tmp_path):
    session = outside_the_event_loop(lambda: busy_site(admin_user, alice))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_cookies([{"name": "sessionid", "value": session, "url": live_site}])
    page = new_page(context)
    page.goto(f"{live_site}/admin/generation/{name}/")
    page.screenshot(path=tmp_path / f"{name}.png", full_page=True)  # to look at when it fails
    edges = page.evaluate(EDGES)
    assert edges["table"] <= edges["box"] and not edges["scrolls"], edges
    assert edges["page"] <= edges["viewport"], edges
