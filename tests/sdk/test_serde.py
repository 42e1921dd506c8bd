import dataclasses
import datetime as dt
import decimal
import enum
import uuid

import pytest
from pydantic import BaseModel

from omium.errors import SerializationError
from omium.sdk import serde


class Currency(enum.Enum):
    EUR = "EUR"
    USD = "USD"


class KYCData(BaseModel):
    customer_name: str
    verified: bool
    checked_at: dt.datetime


@dataclasses.dataclass
class Offer:
    apr: decimal.Decimal
    currency: Currency
    tags: frozenset[str]


VALUES = [
    None,
    True,
    3,
    2.5,
    "naïve ✓",
    [1, "a", None],
    {"nested": {"x": [1, 2]}},
    (1, 2),
    {1, 2, 3},
    b"\x00\xffbytes",
    dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC),
    dt.date(2026, 1, 1),
    decimal.Decimal("4.90"),
    uuid.UUID(int=7),
    Currency.EUR,
    {1: "int keys"},
    float("inf"),
    KYCData(customer_name="Jane Smith", verified=True, checked_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
    Offer(decimal.Decimal("4.9"), Currency.USD, frozenset({"promo", "new"})),
    {"__omium__": "looks like a tag but is data"},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip(value: object) -> None:
    assert serde.loads(serde.dumps(value)) == value


def test_equal_values_have_equal_bytes() -> None:
    assert serde.dumps({"b": 1, "a": {3, 1, 2}}) == serde.dumps({"a": {2, 3, 1}, "b": 1})
    assert serde.digest(serde.dumps([1])) != serde.digest(serde.dumps([2]))


def test_no_pickle_fallback() -> None:
    with pytest.raises(SerializationError, match="register"):
        serde.dumps(object())


def test_loading_refuses_classes_that_are_not_models() -> None:
    forged = b'{"__omium__":"dataclass","c":"subprocess:Popen","v":{"args":["true"]}}'
    with pytest.raises(SerializationError, match="not a dataclass"):
        serde.loads(forged)


def test_registered_types() -> None:
    class Point:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    serde.register(Point, "test.point", lambda p: [p.x, p.y], lambda v: Point(*v))
    assert serde.loads(serde.dumps({"p": Point(1, 2)})) == {"p": Point(1, 2)}
