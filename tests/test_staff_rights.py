"""Staff pages and actions follow Django permissions, not only is_staff: a staff account
gets each one with the permission that matches it, and 403 without it."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from generation import services
from generation.models import Comparison, ModelConfig, TrainingJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows():
    base = services.model_config_active_saved()
    trained = ModelConfig.objects.create(name="Cats, trained", source="packaged")
    job = TrainingJob.objects.create(name="Cats", base=base, result=trained, status="finished")
    comparison = Comparison.objects.create(first=base, second=base, prompt="Once")
    return job, comparison


def _staff(django_user_model, *permissions) -> Client:
    user = django_user_model.objects.create_user("olga", password="a long password", is_staff=True)
    for name in permissions:
        app, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    client = Client()
    client.force_login(user)
    return client


# (method, path, the permission it needs), the paths filled in with the rows' ids.
ROUTES = [
    ("get", "/staff/dashboard/", "generation.view_dashboard"),
    ("get", "/staff/dashboard/data", "generation.view_dashboard"),
    ("get", "/staff/training/{job}/data", "generation.view_trainingjob"),
    ("post", "/staff/training/{job}/cancel", "generation.cancel_trainingjob"),
    ("post", "/staff/training/{job}/activate", "generation.activate_modelconfig"),
    ("get", "/staff/compare/", "generation.add_comparison"),
    ("post", "/staff/compare/", "generation.add_comparison"),
    ("get", "/staff/compare/{comparison}/", "generation.view_comparison"),
    ("get", "/staff/compare/{comparison}/data", "generation.view_comparison"),
    ("get", "/admin/generation/trainingjob/add/", "generation.add_trainingjob"),
]


@pytest.mark.parametrize(("method", "path", "permission"), ROUTES)
def test_a_staff_account_without_the_permission_gets_403(django_user_model, rows, method, path, permission):
    job, comparison = rows
    # Every other staff permission, but not this one.
    others = {p for _, _, p in ROUTES} - {permission}
    client = _staff(django_user_model, *others)
    response = getattr(client, method)(path.format(job=job.pk, comparison=comparison.pk))
    assert response.status_code == 403
    job.refresh_from_db()
    assert not job.cancel_requested and not ModelConfig.objects.get(pk=job.result_id).is_active
    assert not Comparison.objects.exclude(pk=comparison.pk).exists()


@pytest.mark.parametrize(("method", "path", "permission"), ROUTES)
def test_with_the_permission_it_is_answered(django_user_model, rows, method, path, permission):
    job, comparison = rows
    client = _staff(django_user_model, permission, "generation.view_modelconfig")
    response = getattr(client, method)(path.format(job=job.pk, comparison=comparison.pk))
    assert response.status_code in (200, 302) and "/login/" not in response.get("Location", "")
    if permission == "generation.activate_modelconfig":
        assert ModelConfig.objects.get(pk=job.result_id).is_active


@pytest.mark.parametrize(("method", "path", "permission"), ROUTES[:-1])
def test_a_writer_is_sent_to_the_admins_login(alice_client, rows, method, path, permission):
    job, comparison = rows
    response = getattr(alice_client, method)(path.format(job=job.pk, comparison=comparison.pk))
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_activating_a_configuration_is_its_own_right_in_the_admin(django_user_model):
    first = ModelConfig.objects.create(name="First", source="packaged", is_active=True)
    second = ModelConfig.objects.create(name="Second", source="packaged")
    client = _staff(django_user_model, "generation.view_modelconfig", "generation.change_modelconfig")

    listing = client.get("/admin/generation/modelconfig/").content.decode()
    assert "Make the selected configuration the active one" not in listing
    client.post("/admin/generation/modelconfig/", {"action": "activate", "_selected_action": [second.pk]})
    # The form's "active" box is read-only too: ticking it would be activating.
    form = client.get(f"/admin/generation/modelconfig/{second.pk}/change/").content.decode()
    assert 'name="is_active"' not in form
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.is_active and not second.is_active

    # Nor may it edit the active configuration, which is choosing what every writer gets.
    page = client.get(f"/admin/generation/modelconfig/{first.pk}/change/").content.decode()
    assert 'name="source"' not in page and 'name="name"' not in page
    assert 'name="source"' in client.get(f"/admin/generation/modelconfig/{second.pk}/change/").content.decode()

    operator = django_user_model.objects.get(username="olga")
    operator.user_permissions.add(Permission.objects.get(codename="activate_modelconfig"))
    client.post("/admin/generation/modelconfig/", {"action": "activate", "_selected_action": [second.pk]})
    second.refresh_from_db()
    assert second.is_active


def test_the_admins_links_and_buttons_follow_the_rights(django_user_model, admin_user, rows):
    job, _ = rows
    client = _staff(django_user_model, "generation.view_trainingjob")
    page = client.get(f"/admin/generation/trainingjob/{job.pk}/change/").content.decode()
    assert "Load dashboard" not in page and "Side by side" not in page
    assert "training-activate-form" not in page and "training-compare" not in page
    # A superuser has every right, and sees every link and button.
    everything = Client()
    everything.force_login(admin_user)
    page = everything.get(f"/admin/generation/trainingjob/{job.pk}/change/").content.decode()
    assert "Load dashboard" in page and "Side by side" in page
    assert "training-activate-form" in page and "training-compare" in page
