import pytest

from tests.training.test_trainer import STYLE


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def style_stories(alice):
    """Three stories in one style, long enough for a tiny model's examples, which their
    writer allowed the site to train on."""
    from storyteller.stories.models import Story
    from storyteller.stories.services import story_create

    stories = [story_create(owner=alice, title=f"Lighthouse {i}", text=STYLE * 10) for i in range(3)]
    Story.objects.filter(pk__in=[s.pk for s in stories]).update(allow_training=True)
    return [Story.objects.get(pk=s.pk) for s in stories]
