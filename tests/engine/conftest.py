import pytest

from generation.engine.config import EngineConfig, ModelSpec
from generation.engine.engine import Engine


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    engine = Engine.load(ModelSpec(source=str(tiny_model_dir), dtype="float32", device="cpu"), EngineConfig())
    yield engine
    engine.shutdown()
