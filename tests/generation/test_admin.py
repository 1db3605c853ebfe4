import html

import pytest
from huggingface_hub import constants

from generation.models import Generation, ModelConfig, Worker
from storyteller.stories.services import story_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def _config_form(**overrides):
    return {
        "name": "Second",
        "source": "packaged",
        "dtype": "auto",
        "device": "auto",
        "context_window": "",
        "max_new_tokens": 60,
        "temperature": 0.8,
        "top_p": 0.95,
        "top_k": 50,
        "repetition_penalty": 1.1,
        "max_batch_size": "",
        "max_tokens_in_flight": "",
        "prefix_cache_tokens": "",
        "writer_max_new_tokens": 1024,
        "writer_min_temperature": 0,
        "writer_max_temperature": 5,
        **overrides,
    }


def test_a_folder_that_holds_no_model_is_refused_before_it_is_saved(admin_client, tmp_path):
    response = admin_client.post("/admin/generation/modelconfig/add/", _config_form(source=str(tmp_path)))
    assert response.status_code == 200
    assert "is not a model folder" in response.content.decode()
    assert not ModelConfig.objects.exists()


@pytest.mark.parametrize(
    ("files", "words"),
    [(None, "There is no folder at"), ({"config.json": "{}"}, "holds no weights")],
)
def test_a_missing_folder_or_one_without_weights_is_refused(admin_client, tmp_path, files, words):
    folder = tmp_path / "model"
    if files is not None:
        folder.mkdir()
        for name, content in files.items():
            (folder / name).write_text(content)
    response = admin_client.post("/admin/generation/modelconfig/add/", _config_form(source=str(folder)))
    assert response.status_code == 200 and words in response.content.decode()
    assert not ModelConfig.objects.exists()


def test_a_missing_gguf_file_is_refused(admin_client, tmp_path):
    response = admin_client.post("/admin/generation/modelconfig/add/", _config_form(source=f"{tmp_path}/x.gguf"))
    assert "There is no GGUF file" in response.content.decode()
    assert not ModelConfig.objects.exists()


def test_a_hub_id_this_machine_has_not_downloaded_is_refused(admin_client, tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    response = admin_client.post(
        "/admin/generation/modelconfig/add/", _config_form(source="HuggingFaceTB/SmolLM2-360M")
    )
    page = html.unescape(response.content.decode())
    assert f"HuggingFaceTB/SmolLM2-360M is not in this machine's Hugging Face cache ({tmp_path})" in page
    assert "huggingface-cli download HuggingFaceTB/SmolLM2-360M" in page
    assert not ModelConfig.objects.exists()


def test_activating_a_configuration_deactivates_the_others(admin_client, tiny_model_dir):
    first = ModelConfig.objects.create(name="First", source="packaged", is_active=True)
    response = admin_client.post(
        "/admin/generation/modelconfig/add/", _config_form(source=str(tiny_model_dir), is_active="on")
    )
    assert response.status_code == 302
    first.refresh_from_db()
    assert not first.is_active
    assert ModelConfig.objects.get(is_active=True).name == "Second"


def test_the_generation_list_shows_generations_read_only(admin_client, alice):
    story = story_create(owner=alice, title="Whiskers", text="")
    generation = Generation.objects.create(story=story, user=alice, seed=3, status="finished", finish_reason="length")
    page = admin_client.get("/admin/generation/generation/")
    assert page.status_code == 200 and "Whiskers" in page.content.decode()
    assert admin_client.get("/admin/generation/generation/add/").status_code == 403
    detail = admin_client.post(f"/admin/generation/generation/{generation.id}/change/", {"seed": 4})
    assert detail.status_code == 403
    generation.refresh_from_db()
    assert generation.seed == 3


def test_the_activate_action_switches_the_active_configuration(admin_client, tiny_model_dir):
    first = ModelConfig.objects.create(name="First", source="packaged", is_active=True)
    second = ModelConfig.objects.create(name="Second", source=str(tiny_model_dir))
    response = admin_client.post(
        "/admin/generation/modelconfig/", {"action": "activate", "_selected_action": [second.pk]}
    )
    assert response.status_code == 302
    assert list(ModelConfig.objects.filter(is_active=True)) == [second]
    first.refresh_from_db()
    assert not first.is_active


def test_the_generation_list_filters_by_user_status_and_model_and_shows_timings(admin_client, alice, bob):
    from datetime import timedelta

    from django.utils import timezone

    start = timezone.now()
    for user, model, status in [(alice, "SmolLM2", "finished"), (bob, "Other", "finished"), (alice, "Other", "queued")]:
        story = story_create(owner=user, title=f"{user.username} {model} {status}", text="")
        Generation.objects.create(
            story=story,
            user=user,
            seed=1,
            status=status,
            model_name=model,
            ttft_ms=250.0,
            tokens_per_s=12.34,
            started_at=start + timedelta(seconds=1.5),
            finished_at=start + timedelta(seconds=4),
        )
    Generation.objects.update(created_at=start)

    def titles(query):
        html = admin_client.get(f"/admin/generation/generation/?{query}").content.decode()
        return {t for t in ("alice SmolLM2 finished", "bob Other finished", "alice Other queued") if t in html}

    assert titles(f"user__id__exact={alice.pk}") == {"alice SmolLM2 finished", "alice Other queued"}
    assert titles("status__exact=finished&model_name=Other") == {"bob Other finished"}
    html = admin_client.get("/admin/generation/generation/?model_name=SmolLM2").content.decode()
    assert "1.5 s" in html and "0.25 s" in html and "12.3" in html and "2.5 s" in html


def test_the_admin_shows_each_worker_and_where_a_switch_stands(admin_client, tiny_model_dir):
    from datetime import timedelta

    from django.utils import timezone

    config = ModelConfig.objects.create(name="Tiny", source=str(tiny_model_dir), is_active=True)
    now = timezone.now()
    Worker.objects.create(
        name="host-a:11",
        state="ready",
        config_name="Default",
        model_name="SmolLM2",
        dtype="float32",
        device="cpu",
        loading="Tiny",
        live_requests=3,
        last_heartbeat=now,
    )
    Worker.objects.create(
        name="host-b:12",
        state="ready",
        config_name="Default",
        model_name="SmolLM2",
        error="Tiny: out of memory",
        last_heartbeat=now,
    )
    Worker.objects.create(name="host-c:13", config_name="Tiny", last_heartbeat=now - timedelta(minutes=5))

    listing = admin_client.get("/admin/generation/worker/").content.decode()
    assert "host-a:11" in listing and "host-b:12" in listing and "Tiny: out of memory" in listing
    page = admin_client.get(f"/admin/generation/modelconfig/{config.pk}/change/").content.decode()
    assert "host-a:11: loading it; SmolLM2 serves meanwhile" in page
    assert "host-b:12: could not load it (Tiny: out of memory); SmolLM2 serves" in page
    assert "host-c:13" not in page  # silent for five minutes: gone


def test_staff_see_each_writers_use_against_their_limits(admin_client, alice, bob):
    from generation.models import UsageLimit

    UsageLimit.objects.create(tokens_per_day=5000)
    UsageLimit.objects.create(user=bob, concurrent_generations=1)
    story = story_create(owner=alice, title="Whiskers", text="")
    Generation.objects.create(story=story, user=alice, seed=1, status="finished", new_tokens=1234)
    Generation.objects.create(story=story, user=alice, seed=1, status="running", new_tokens=10)

    html = admin_client.get("/admin/generation/writerusage/").content.decode()
    alice_row = html[html.index(">alice<") : html.index("</tr>", html.index(">alice<"))]
    assert ">1244<" in alice_row and ">2<" in alice_row and ">1<" in alice_row
    assert "at once: no limit, per request: no limit, tokens per 24 h: 5,000" in alice_row
    bob_row = html[html.index(">bob<") : html.index("</tr>", html.index(">bob<"))]
    assert "at once: 1, per request: no limit, tokens per 24 h: 5,000" in bob_row


def test_a_default_outside_what_writers_may_choose_is_refused(admin_client, tiny_model_dir):
    form = _config_form(source=str(tiny_model_dir), temperature=1.2, writer_max_temperature=1.0)
    response = admin_client.post("/admin/generation/modelconfig/add/", form)
    assert response.status_code == 200
    assert "The default temperature is outside what writers may choose (0.0-1.0)." in response.content.decode()
    assert not ModelConfig.objects.exists()


def test_the_admin_refuses_a_prefix_cache_that_would_keep_nothing(admin_client, tiny_model_dir):
    response = admin_client.post(
        "/admin/generation/modelconfig/add/", _config_form(source=str(tiny_model_dir), prefix_cache_tokens=8)
    )
    assert response.status_code == 200
    assert "so 8 would keep nothing: set 0 to turn it off, or at least 16." in response.content.decode()
    assert not ModelConfig.objects.exists()


def test_the_admin_refuses_int8_weights_on_a_gpu_and_takes_them_on_the_cpu(admin_client, tiny_model_dir):
    form = _config_form(source=str(tiny_model_dir), dtype="int8", device="cuda")
    response = admin_client.post("/admin/generation/modelconfig/add/", form)
    assert response.status_code == 200
    assert "int8 weights run on the CPU only; on a GPU use bfloat16 or float16." in response.content.decode()
    assert not ModelConfig.objects.exists()
    response = admin_client.post("/admin/generation/modelconfig/add/", {**form, "device": "cpu"})
    assert response.status_code == 302
    assert ModelConfig.objects.get().dtype == "int8"


def test_it_lists_the_generations_that_failed_under_their_own_filter(admin_client, alice):
    ended = {"length": "finished", "error": "finished", "cancelled": "finished", "": "running"}
    for reason, status in ended.items():
        story = story_create(owner=alice, title=f"Story {reason or 'running'}", text="")
        Generation.objects.create(story=story, user=alice, seed=1, status=status, finish_reason=reason)

    def titles(query):
        html = admin_client.get(f"/admin/generation/generation/?{query}").content.decode()
        return {t for t in ("Story length", "Story error", "Story cancelled", "Story running") if t in html}

    listing = admin_client.get("/admin/generation/generation/").content.decode()
    assert "By outcome" in listing and 'href="?outcome=failed"' in listing
    assert titles("outcome=failed") == {"Story error"}
    assert titles("outcome=completed") == {"Story length"}
    assert titles("outcome=cancelled") == {"Story cancelled"}
    assert titles("outcome=active") == {"Story running"}


def test_it_shows_a_worker_that_stopped_reporting_as_offline_not_ready(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    Worker.objects.create(name="host-a:11", state="ready", last_heartbeat=now)
    Worker.objects.create(name="host-b:12", state="ready", last_heartbeat=now - timedelta(hours=2))  # an earlier run

    def row(html, name):
        start = html.index(f">{name}<")
        return html[html.rindex("<tr", 0, start) : html.index("</tr>", start)]

    listing = admin_client.get("/admin/generation/worker/").content.decode()
    assert ">Ready<" in row(listing, "host-a:11")
    assert ">Offline (last seen 2\xa0hours ago)<" in row(listing, "host-b:12")
    assert "Ready" not in row(listing, "host-b:12")

    offline = admin_client.get("/admin/generation/worker/?state=offline").content.decode()
    assert "host-b:12" in offline and "host-a:11" not in offline
    ready = admin_client.get("/admin/generation/worker/?state=ready").content.decode()
    assert "host-a:11" in ready and "host-b:12" not in ready


def test_the_worker_list_shows_each_workers_kv_cache(admin_client):
    from django.utils import timezone

    now = timezone.now()
    cache = {"held_tokens": 160, "cached_tokens": 12_800, "budget_tokens": 32_768}
    Worker.objects.create(
        name="host-a:11",
        state="ready",
        kv_cache={**cache, "prompt_tokens": 1000, "found_tokens": 640},
        last_heartbeat=now,
    )
    Worker.objects.create(
        name="host-b:12",
        state="ready",
        kv_cache={**cache, "cached_tokens": 0, "budget_tokens": 0, "prompt_tokens": 0, "found_tokens": 0},
        last_heartbeat=now,
    )
    Worker.objects.create(name="host-c:13", state="loading", last_heartbeat=now)

    def row(html, name):
        start = html.index(f">{name}<")
        return html[html.rindex("<tr", 0, start) : html.index("</tr>", start)]

    listing = admin_client.get("/admin/generation/worker/").content.decode()
    assert "KV cache (positions)" in listing
    assert "prefix cache: 12,800 of 32,768 (39%)<br>held: 160<br>found: 64% of 1,000" in row(listing, "host-a:11")
    assert "prefix cache: off<br>held: 160<br>found: -" in row(listing, "host-b:12")
    assert "prefix cache" not in row(listing, "host-c:13")
