import pytest

from engine.config import EngineConfig, ModelSpec
from engine.engine import Engine


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    engine = Engine.load(ModelSpec(source=str(tiny_model_dir), dtype="float32", device="cpu"), EngineConfig())
    yield engine
    engine.shutdown()


def pytest_collection_modifyitems(items):
    # Nothing here reads or writes the database: running it again on PostgreSQL adds nothing.
    for item in items:
        if "/tests/engine/" in str(item.path):
            item.add_marker(pytest.mark.nodb)
