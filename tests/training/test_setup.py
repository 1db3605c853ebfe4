"""Setting a job up: the admin form and `manage.py train` refuse what cannot be trained, saying
why, before anything is created or trained."""

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.core.management import CommandError, call_command

from engine.training.settings import DEFAULTS, HELDOUT_PERCENT, SEQUENCE_LENGTH
from generation import services
from generation.management.commands.train import Command
from generation.models import ModelConfig, TrainingJob
from generation.training import services as training
from generation.training import uploads
from storyteller.stories.models import Story
from tests.training.test_jobs import job_form
from tests.training.test_trainer import STYLE

pytestmark = pytest.mark.django_db


def refused(admin_client, data):
    answer = admin_client.post("/admin/generation/trainingjob/add/", data)
    assert answer.status_code == 200  # the form again, with its errors
    assert not TrainingJob.objects.exists()
    return answer.content.decode()


def test_a_file_that_is_not_utf8_text_is_refused_naming_it(admin_client, style_stories):
    base = services.model_config_active_saved()
    upload = SimpleUploadedFile("latin1.txt", "Café au lait".encode("latin-1"))
    page = refused(admin_client, {**job_form(base, style_stories), "files": [upload]})
    assert "latin1.txt is not UTF-8 text (byte 0xe9 at position 3)" in page


def test_a_file_too_large_is_refused_before_it_is_read_into_memory(admin_client, style_stories, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_FILE_BYTES", 2**20)
    # Django keeps an upload this large (over FILE_UPLOAD_MAX_MEMORY_SIZE) in a file on disk.
    monkeypatch.setattr(TemporaryUploadedFile, "read", property(lambda self: pytest.fail("the upload was read")))
    base = services.model_config_active_saved()
    upload = SimpleUploadedFile("big.txt", b"a" * 3 * 2**20)
    page = refused(admin_client, {**job_form(base, style_stories), "files": [upload]})
    assert "big.txt is 3.0 MiB; a file may hold at most 1 MiB." in page


def test_the_command_refuses_a_file_too_large_before_reading_it(tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_FILE_BYTES", 2**20)
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * 3 * 2**20)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the file was read"))
    with pytest.raises(CommandError, match=r"big.txt is 3.0 MiB; a file may hold at most 1 MiB."):
        call_command("train", "--files", str(big))


def test_a_job_with_no_corpus_or_out_of_bounds_is_refused(admin_client):
    base = services.model_config_active_saved()
    assert "The corpus is empty: choose stories or upload .txt files." in refused(admin_client, job_form(base))
    empty = SimpleUploadedFile("empty.txt", b"  \n")
    assert "empty.txt is empty." in refused(admin_client, {**job_form(base), "files": [empty]})
    upload = SimpleUploadedFile("a.txt", STYLE.encode())
    page = refused(admin_client, {**job_form(base), "files": [upload], "steps": 0, "learning_rate": 5})
    assert "Ensure this value is greater than or equal to 1." in page
    assert "Ensure this value is less than or equal to 1.0." in page


def test_lora_on_a_configuration_that_already_carries_an_adapter_is_refused(admin_client, tmp_path, style_stories):
    (tmp_path / "adapter_config.json").write_text("{}")
    trained = ModelConfig.objects.create(name="Trained", source="packaged", adapter=str(tmp_path))
    page = refused(admin_client, job_form(trained, style_stories))
    assert "already carries an adapter; train LoRA on one without" in page


def test_it_offers_the_fresh_sites_default_as_a_base_without_saving_anything(admin_client, settings):
    assert not ModelConfig.objects.exists()
    page = admin_client.get("/admin/generation/trainingjob/add/").content.decode()
    assert f'<option value="" selected>Default: {settings.STORYTELLER_DEFAULT_MODEL} (what writers use now)' in page
    assert not ModelConfig.objects.exists()  # opening a form writes nothing


def test_it_saves_the_fresh_sites_default_with_the_first_job_trained_on_it(admin_client, style_stories, settings):
    answer = admin_client.post("/admin/generation/trainingjob/add/", job_form(None, style_stories))
    assert answer.status_code == 302, answer.content.decode()[:2000]
    job = TrainingJob.objects.get()
    assert (job.base.name, job.base.source, job.base.is_active) == ("Default", settings.STORYTELLER_DEFAULT_MODEL, True)
    assert ModelConfig.objects.count() == 1


def test_it_opens_the_add_page_with_the_active_configuration_chosen_and_no_new_one(admin_client, tiny_model_dir):
    active = ModelConfig.objects.create(name="Tiny", source=str(tiny_model_dir), is_active=True)
    page = admin_client.get("/admin/generation/trainingjob/add/").content.decode()
    assert f'<option value="{active.pk}" selected>Tiny</option>' in page
    assert list(ModelConfig.objects.all()) == [active]


def test_it_tells_stories_of_the_same_title_apart_in_the_story_picker(admin_client, alice, bob):
    import re

    from storyteller.stories.services import story_create

    base = services.model_config_active_saved()
    mine = story_create(owner=alice, title="Whiskers", text="A cat sat.")
    theirs = story_create(owner=bob, title="Whiskers", text="A cat sat on the mat.")
    Story.objects.filter(pk__in=[mine.pk, theirs.pk]).update(allow_training=True)
    page = admin_client.get("/admin/generation/trainingjob/add/").content.decode()
    url = re.search(r'<select name="stories"[^>]*data-ajax--url="([^"]+)"', page)[1]  # where the picker searches
    query = {"term": "Whisk", "app_label": "generation", "model_name": "trainingjob", "field_name": "stories"}
    found = admin_client.get(url, query).json()["results"]
    assert sorted(found, key=lambda r: int(r["id"])) == [
        {"id": str(mine.pk), "text": f"Whiskers (alice, story {mine.pk}, 3 words)"},
        {"id": str(theirs.pk), "text": f"Whiskers (bob, story {theirs.pk}, 6 words)"},
    ]

    # Chosen ones keep the same label when the form comes back with an error.
    page = admin_client.post("/admin/generation/trainingjob/add/", job_form(base, [theirs], steps=0)).content.decode()
    assert f'<option value="{theirs.pk}" selected>Whiskers (bob, story {theirs.pk}, 6 words)</option>' in page

    # And on the job's own page, once it is set up.
    job = TrainingJob.objects.create(name="Cats", base=base)
    job.stories.set([mine, theirs])
    page = admin_client.get(f"/admin/generation/trainingjob/{job.pk}/change/").content.decode()
    assert f"Whiskers (alice, story {mine.pk}, 3 words); Whiskers (bob, story {theirs.pk}, 6 words)" in page


def test_a_finished_job_can_be_read_but_not_changed(admin_client, style_stories):
    job = TrainingJob.objects.create(name="Done", base=services.model_config_active_saved(), status="finished")
    page = admin_client.get(f"/admin/generation/trainingjob/{job.pk}/change/")
    assert page.status_code == 200 and 'id="training"' in page.content.decode()
    admin_client.post(f"/admin/generation/trainingjob/{job.pk}/change/", {**job_form(job.base), "name": "Changed"})
    job.refresh_from_db()
    assert job.name == "Done"


def test_the_training_pages_are_for_staff_only(client, alice, style_stories):
    job = TrainingJob.objects.create(name="Done", base=services.model_config_active_saved())
    client.force_login(alice)
    for url in (f"/staff/training/{job.pk}/data", "/staff/compare/"):
        assert client.get(url).status_code == 302  # to the admin's login
    client.post(f"/staff/training/{job.pk}/cancel")
    job.refresh_from_db()
    assert job.status == "queued" and not job.cancel_requested


def test_the_command_trains_on_stories_and_files_with_a_progress_bar(tmp_path, style_stories, settings):
    settings.STORYTELLER_MODELS_DIR = tmp_path / "models"
    text = tmp_path / "more.txt"
    text.write_text(STYLE * 5)
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "train",
        "--stories",
        ",".join(str(s.pk) for s in style_stories),
        "--files",
        str(text),
        "--steps",
        "20",
        "--sequence-length",
        "32",
        "--learning-rate",
        "0.01",
        "--eval-every",
        "10",
        "--activate",
        stdout=out,
        stderr=err,
    )
    job = TrainingJob.objects.get()
    assert job.status == "finished" and job.step == 20 and job.files.get().name == "more.txt"
    assert "step 20/20 [########################]" in err.getvalue()
    assert "step 10: held-out loss" in err.getvalue()
    before, after = job.evaluations[0][2], job.evaluations[-1][2]
    assert f"Held-out perplexity: {before:.2f} before, {after:.2f} after 20 steps." in out.getvalue()
    assert ModelConfig.objects.get(is_active=True) == job.result
    assert str(tmp_path / "models") in job.output_dir


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--stories", "99999"], "No story with id 99999."),
        (["--stories", "three"], "--stories takes story ids separated by commas"),
        (["--files", "/nonexistent.txt"], "There is no file /nonexistent.txt."),
        (["--base", "Nope", "--files", "x"], "No configuration named 'Nope'"),
        ([], "The corpus is empty"),
        (["--threads", "0", "--files", "{story_file}"], "--threads is at least 1."),
        (["--sequence-length", "100000", "--files", "{story_file}"], "sequence_length: Ensure this value"),
    ],
)
def test_the_command_refuses_what_cannot_be_trained(tmp_path, argv, words):
    story_file = tmp_path / "a.txt"
    story_file.write_text(STYLE)
    argv = [a.replace("{story_file}", str(story_file)) for a in argv]
    with pytest.raises(CommandError, match=words.replace("(", r"\(")):
        call_command("train", *argv, stdout=io.StringIO(), stderr=io.StringIO())
    assert not TrainingJob.objects.exists()


def test_the_command_fails_clearly_on_a_corpus_too_small(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("A cat.")
    with pytest.raises(CommandError, match=r"it needs at least 256 \(two examples of 128 tokens"):
        call_command("train", "--files", str(small), stdout=io.StringIO(), stderr=io.StringIO())
    assert TrainingJob.objects.get().status == "failed"


def test_the_admin_form_and_the_command_start_from_the_trainers_defaults(admin_client):
    expected = {
        "method": DEFAULTS.method,
        "steps": DEFAULTS.steps,
        "learning_rate": DEFAULTS.learning_rate,
        "sequence_length": SEQUENCE_LENGTH,
        "batch_size": DEFAULTS.batch_size,
        "heldout_percent": HELDOUT_PERCENT,
        "eval_every": DEFAULTS.eval_every,
        "lora_rank": DEFAULTS.lora_rank,
        "seed": DEFAULTS.seed,
    }
    job = TrainingJob()
    assert {name: getattr(job, name) for name in expected} == expected
    assert job.time_limit_minutes * 60 == DEFAULTS.time_limit_s
    form = admin_client.get("/admin/generation/trainingjob/add/").context["adminform"].form
    assert {name: form.fields[name].initial for name in expected} == expected
    options = vars(Command().create_parser("manage.py", "train").parse_args([]))
    assert {name: options[name] for name in expected} == expected
    assert options["time_limit"] * 60 == DEFAULTS.time_limit_s


def test_the_story_picker_offers_only_stories_their_writers_allowed_and_ones_own(admin_client, admin_user, alice):
    import re

    from storyteller.stories.services import story_create, story_trash

    allowed = story_create(owner=alice, title="Whiskers allowed", text="A cat sat.")
    Story.objects.filter(pk=allowed.pk).update(allow_training=True)
    private = story_create(owner=alice, title="Whiskers private", text="A cat sat.")
    own = story_create(owner=admin_user, title="Whiskers of the operator", text="A cat sat.")
    trashed = story_create(owner=alice, title="Whiskers trashed", text="A cat sat.")
    Story.objects.filter(pk=trashed.pk).update(allow_training=True)
    story_trash(trashed)
    page = admin_client.get("/admin/generation/trainingjob/add/").content.decode()
    url = re.search(r'<select name="stories"[^>]*data-ajax--url="([^"]+)"', page)[1]
    query = {"term": "Whisk", "app_label": "generation", "model_name": "trainingjob", "field_name": "stories"}
    found = {int(result["id"]) for result in admin_client.get(url, query).json()["results"]}
    assert found == {allowed.pk, own.pk}

    # A story sent anyway is refused, and no job is made.
    base = services.model_config_active_saved()
    page = refused(admin_client, job_form(base, [allowed, private]))
    assert f"Select a valid choice. {private.pk} is not one of the available choices." in page


def test_the_command_refuses_stories_their_writers_did_not_allow(alice, style_stories):
    from storyteller.stories.services import story_create

    private = story_create(owner=alice, title="Diary", text=STYLE * 10)
    ids = ",".join(str(s.pk) for s in [*style_stories, private])
    with pytest.raises(CommandError, match=rf"Not allowed for training by their writers: Diary \(story {private.pk}\)"):
        call_command("train", "--stories", ids, "--steps", "1")
    assert not TrainingJob.objects.exists()


def test_a_story_whose_writer_takes_the_permission_back_before_the_job_runs_is_left_out(
    admin_user, alice, style_stories
):
    from generation.worker.training import documents_of

    job = training.training_job_create(name="Cats", base=None, stories=style_stories, user=admin_user)
    Story.objects.filter(pk=style_stories[0].pk).update(allow_training=False)
    names = {document.name for document in documents_of(job)}
    assert names == {f'"{story.title}" (story {story.pk})' for story in style_stories[1:]}
