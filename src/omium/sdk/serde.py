"""JSON-compatible serialization with pluggable types — never pickle.

Values become canonical JSON (sorted keys, no spaces), so equal values have equal bytes and a
content address (:func:`digest`) identifies them. Types JSON lacks are written as tagged objects
``{"__omium__": TAG, "v": ...}``: bytes, tuples, sets, datetimes, dates, Decimal, UUID, Enum
members, dataclasses and pydantic models. Other types plug in with :func:`register`.

Dataclasses and pydantic models are restored by import path; only classes that really are
dataclasses or pydantic models are accepted, so stored data cannot make the loader call anything
else.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import importlib
import json
import uuid
from collections.abc import Callable
from typing import Any

from omium.errors import SerializationError

TAG = "__omium__"

_encoders: dict[type, tuple[str, Callable[[Any], Any]]] = {}
_decoders: dict[str, Callable[[Any], Any]] = {}


def register(cls: type, tag: str, encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> None:
    """Teach the serializer a type: ``encode`` returns JSON-compatible data, ``decode`` inverts it."""
    if tag in _decoders and _encoders.get(cls, (tag,))[0] != tag:
        raise SerializationError(f"serde tag {tag!r} is taken")
    _encoders[cls] = (tag, encode)
    _decoders[tag] = decode


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _load_class(path: str) -> type:
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise SerializationError(f"cannot import {path!r} to decode a stored value: {exc}") from None
    if not isinstance(target, type):
        raise SerializationError(f"{path!r} is not a class")
    return target


def _is_pydantic(value: Any) -> bool:
    return hasattr(type(value), "model_dump") and hasattr(type(value), "model_validate")


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {TAG: "float", "v": repr(value)}
        return value
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and TAG not in value:
            return {k: _encode(v) for k, v in value.items()}
        return {TAG: "dict", "v": [[_encode(k), _encode(v)] for k, v in value.items()]}
    registered = _encoders.get(type(value))
    if registered is not None:
        tag, encode = registered
        return {TAG: tag, "v": _encode(encode(value))}
    if isinstance(value, tuple):
        return {TAG: "tuple", "v": [_encode(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        items = [_encode(v) for v in value]
        items.sort(key=lambda item: json.dumps(item, sort_keys=True))
        return {TAG: "set" if isinstance(value, set) else "frozenset", "v": items}
    if isinstance(value, bytes):
        return {TAG: "bytes", "v": base64.b64encode(value).decode()}
    if isinstance(value, dt.datetime):
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, enum.Enum):
        return {TAG: "enum", "c": _path(type(value)), "v": _encode(value.value)}
    if _is_pydantic(value):
        return {TAG: "pydantic", "c": _path(type(value)), "v": _encode(value.model_dump(mode="python"))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {TAG: "dataclass", "c": _path(type(value)), "v": fields}
    raise SerializationError(
        f"cannot serialize a {type(value).__qualname__}: use JSON types, dataclasses or pydantic models, "
        "or omium.sdk.serde.register() the type"
    )


def _decode(data: Any) -> Any:
    if isinstance(data, list):
        return [_decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(TAG)
    if tag is None:
        return {k: _decode(v) for k, v in data.items()}
    raw: Any = data.get("v")
    if tag == "tuple":
        return tuple(_decode(v) for v in raw)
    if tag == "set":
        return {_decode(v) for v in raw}
    if tag == "frozenset":
        return frozenset(_decode(v) for v in raw)
    if tag == "dict":
        return {_decode(k): _decode(v) for k, v in raw}
    if tag == "bytes":
        return base64.b64decode(raw)
    if tag == "float":
        return float(raw)
    if tag == "datetime":
        return dt.datetime.fromisoformat(raw)
    if tag == "date":
        return dt.date.fromisoformat(raw)
    if tag == "decimal":
        return decimal.Decimal(raw)
    if tag == "uuid":
        return uuid.UUID(raw)
    if tag == "enum":
        cls = _load_class(data["c"])
        if not issubclass(cls, enum.Enum):
            raise SerializationError(f"{data['c']!r} is not an Enum")
        return cls(_decode(raw))
    if tag == "pydantic":
        cls = _load_class(data["c"])
        if not hasattr(cls, "model_validate"):
            raise SerializationError(f"{data['c']!r} is not a pydantic model")
        return cls.model_validate(_decode(raw))
    if tag == "dataclass":
        cls = _load_class(data["c"])
        if not dataclasses.is_dataclass(cls):
            raise SerializationError(f"{data['c']!r} is not a dataclass")
        return cls(**{k: _decode(v) for k, v in raw.items()})
    decode = _decoders.get(tag)
    if decode is None:
        raise SerializationError(f"no decoder registered for serde tag {tag!r}")
    return decode(_decode(raw))


def dumps(value: Any) -> bytes:
    """Canonical JSON bytes of ``value`` (equal values give equal bytes)."""
    try:
        return json.dumps(
            _encode(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise SerializationError(f"cannot serialize value: {exc}") from exc


def loads(data: bytes) -> Any:
    """Invert :func:`dumps`."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SerializationError(f"stored value is not valid JSON: {exc}") from exc
    return _decode(document)


def digest(data: bytes) -> str:
    """The content address of serialized bytes: hex SHA-256 (64 characters)."""
    return hashlib.sha256(data).hexdigest()


__all__ = ["digest", "dumps", "loads", "register"]
