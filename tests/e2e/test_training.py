"""A training job's admin page in a real browser: it follows the job live (step, time,
perplexity, the loss curve drawn by Chart.js) while the training worker runs it, and then
offers the trained model and the side-by-side page."""

import pytest
from django.test import Client
from playwright.sync_api import expect

from generation import services
from generation.models import ModelConfig, TrainingJob
from generation.training import services as training
from tests.e2e.conftest import outside_the_event_loop
from tests.training.test_trainer import STYLE

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def admin_session(admin_user) -> str:
    client = Client()
    client.force_login(admin_user)
    return client.cookies["sessionid"].value


def admin_page(browser, new_page, live_site, session):
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": session, "url": live_site}])
    return new_page(context)


CURVES = """() => Chart.getChart(document.getElementById('chart-loss')).data.datasets.map(d => d.data.map(p => p.x))"""


def test_the_job_page_follows_training_live_and_offers_the_result(
    admin_user, alice, live_site, training_worker, browser, new_page
):
    def make():
        from storyteller.stories.services import story_create

        stories = [story_create(owner=alice, title=f"Lighthouse {i}", text=STYLE * 10) for i in range(3)]
        for story in stories:  # their writer allowed training on them
            story.allow_training = True
            story.save(update_fields=["allow_training"])
        job = TrainingJob.objects.create(
            name="Lighthouse",
            base=services.model_config_active_saved(),
            steps=40,
            sequence_length=32,
            learning_rate=0.01,
            eval_every=10,
        )
        job.stories.set(stories)
        client = Client()
        client.force_login(admin_user)
        return job, client.cookies["sessionid"].value

    job, session = outside_the_event_loop(make)
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": session, "url": live_site}])
    page = new_page(context)
    page.goto(f"{live_site}/admin/generation/trainingjob/{job.pk}/change/")
    expect(page.locator("#training-state")).to_have_text("Waiting for the training worker.")
    expect(page.get_by_role("button", name="Cancel training")).to_be_visible()

    outside_the_event_loop(lambda: training.training_job_queue(job))
    expect(page.locator("#training")).to_have_attribute("data-status", "finished", timeout=60_000)
    expect(page.locator("#training-step")).to_have_text("40 / 40")
    done = outside_the_event_loop(lambda: TrainingJob.objects.select_related("result").get(pk=job.pk))
    before, after = done.evaluations[0][2], done.evaluations[-1][2]
    expect(page.locator("#perplexity-before")).to_have_text(f"{before:.2f}")
    expect(page.locator("#perplexity-after")).to_have_text(f"{after:.2f}")
    assert after < before
    shown = page.get_by_role("list", name="Held-out perplexity at each evaluation").get_by_role("listitem")
    expect(shown).to_have_text([f"step {s}: {p:.2f}" for s, _, p in done.evaluations])
    steps, evaluations = page.evaluate(CURVES)
    assert steps == list(range(1, 41)) and evaluations == [0, 10, 20, 30, 40]
    expect(page.locator("#training-state")).to_contain_text(done.result.name)
    expect(page.get_by_role("button", name="Cancel training")).to_be_hidden()

    page.get_by_role("link", name="Compare side by side").click()
    expect(page.get_by_label("Model B")).to_have_value(str(done.result.pk))
    page.get_by_label("Prompt").fill("The lighthouse keeper")
    page.get_by_role("button", name="Continue with both").click()
    expect(page.locator("#comparison")).to_have_attribute("data-status", "finished", timeout=60_000)
    assert page.locator("#first-text").text_content() != page.locator("#second-text").text_content()
    expect(page.get_by_role("heading", name=f"B: {done.result.name}")).to_be_visible()


def test_it_opens_the_add_page_without_a_script_error_and_finds_stories_by_writer(
    admin_user, alice, live_site, browser, new_page
):
    def make():
        from storyteller.stories.services import story_create

        story = story_create(owner=alice, title="Whiskers", text="A cat.")
        story.allow_training = True  # its writer allowed it: the picker offers it
        story.save(update_fields=["allow_training"])
        return story, admin_session(admin_user)

    story, session = outside_the_event_loop(make)
    page = admin_page(browser, new_page, live_site, session)
    failures = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.on("console", lambda m: m.type == "error" and failures.append(f"{m.text} ({m.location['url']})"))
    page.goto(f"{live_site}/admin/generation/trainingjob/add/")
    expect(page.get_by_role("button", name="Save", exact=True)).to_be_visible()
    # The story picker searches, and labels each story with its writer and id.
    page.locator(".field-stories .select2-selection").click()
    page.keyboard.type("Whisk")
    expect(page.get_by_role("option", name=f"Whiskers (alice, story {story.pk}, 2 words)")).to_be_visible()
    page.wait_for_load_state("networkidle")
    # Chromium asks for /favicon.ico by itself; the site has none, and that is no script's error.
    assert [failure for failure in failures if "/favicon.ico)" not in failure] == []


def test_it_keeps_the_jobs_fields_in_step_with_its_live_progress(admin_user, live_site, browser, new_page):
    def make():
        job = TrainingJob.objects.create(name="Lighthouse", base=services.model_config_active_saved())
        return job, admin_session(admin_user)

    job, session = outside_the_event_loop(make)
    page = admin_page(browser, new_page, live_site, session)
    page.goto(f"{live_site}/admin/generation/trainingjob/{job.pk}/change/")
    expect(page.locator("#training-state")).to_have_text("Waiting for the training worker.")
    field = {name: page.locator(f".field-{name} .readonly") for name in ("status", "stop_reason", "result", "corpus")}
    expect(field["status"]).to_have_text("Queued")

    def finish():
        from django.utils import timezone

        result = ModelConfig.objects.create(name="Lighthouse (job 1, 40 steps)", source="packaged")
        TrainingJob.objects.filter(pk=job.pk).update(
            status="finished",
            stop_reason="steps",
            result=result,
            step=40,
            corpus_tokens=5120,
            train_examples=128,
            heldout_examples=32,
            started_at=timezone.now(),
            finished_at=timezone.now(),
        )
        return result

    result = outside_the_event_loop(finish)
    expect(page.locator("#training-state")).to_contain_text("Finished (all its steps done)")
    # Without a reload, the fields below say what the box above says.
    expect(field["status"]).to_have_text("Finished")
    expect(field["stop_reason"]).to_have_text("steps")
    expect(field["result"].get_by_role("link", name=result.name)).to_have_attribute(
        "href", f"/admin/generation/modelconfig/{result.pk}/change/"
    )
    expect(field["corpus"]).to_have_text("5,120 tokens: 128 to train on, 32 held out")


def test_it_estimates_the_remaining_time_once_steps_have_a_pace(admin_user, live_site, browser, new_page):
    def make():
        from django.utils import timezone

        base = services.model_config_active_saved()
        job = TrainingJob.objects.create(name="Lighthouse", base=base, status="running", started_at=timezone.now())
        return job, admin_session(admin_user)

    job, session = outside_the_event_loop(make)
    page = admin_page(browser, new_page, live_site, session)
    page.goto(f"{live_site}/admin/generation/trainingjob/{job.pk}/change/")
    expect(page.locator("#training-remaining")).to_have_text("estimating...")

    # 10 of 100 steps at 2 s a step: 90 steps left.
    outside_the_event_loop(lambda: TrainingJob.objects.filter(pk=job.pk).update(step=10, seconds_per_step=2.0))
    expect(page.locator("#training-remaining")).to_have_text("3 min 0 s")
