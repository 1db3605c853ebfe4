import pytest

from tests.training.test_trainer import STYLE


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def style_stories(alice):
    """Three stories in one style, long enough for a tiny model's examples."""
    from storyteller.stories.services import story_create

    return [story_create(owner=alice, title=f"Lighthouse {i}", text=STYLE * 10) for i in range(3)]
