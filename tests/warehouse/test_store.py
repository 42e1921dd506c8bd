import pytest

from omium.sdk.store import CheckpointStore
from omium.warehouse import ClickHouseWarehouse
from omium.warehouse.store import WarehouseStore
from tests.sdk.store_conformance import StoreConformance


class TestWarehouseStore(StoreConformance):
    @pytest.fixture
    def store(self, warehouse: ClickHouseWarehouse) -> CheckpointStore:
        return WarehouseStore(warehouse)


def test_an_unchanged_value_is_stored_once(warehouse: ClickHouseWarehouse) -> None:
    store = WarehouseStore(warehouse)
    for _ in range(5):
        store.put_blob(b'{"history":["same"]}')
    assert warehouse.scalar("SELECT count() FROM omium_state_blobs") == 1
