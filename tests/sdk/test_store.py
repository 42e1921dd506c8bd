import pytest

from omium.sdk.store import CheckpointStore, MemoryStore
from tests.sdk.store_conformance import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store(self) -> CheckpointStore:
        return MemoryStore()
