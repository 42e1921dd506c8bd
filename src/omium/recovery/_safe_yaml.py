"""Reading a small YAML document (a recovery policy) that anyone may hand us, within fixed bounds.

``yaml.safe_load`` constructs no arbitrary objects, but it still expands aliases without limit (a
300-byte "billion laughs" file becomes gigabytes), recurses once per level of nesting, and turns
complex keys and undecodable bytes into tracebacks. Here the text is size-checked and decoded
first, then composed into YAML nodes with every alias counted at its expanded size, so the
composer refuses a bomb after at most :data:`MAX_NODES` nodes, and nesting past :data:`MAX_DEPTH`
before it recurses further. Every refusal is a :class:`~omium.errors.ConfigError` reading
``source:line: problem``, and the nodes are kept so a later error can name its line too
(:meth:`Document.line`).
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any

import yaml

from omium.errors import ConfigError

# A policy is a few hundred bytes; this bounds the pure-Python scanner to about 0.1 s.
MAX_BYTES = 256 * 1024
# Nodes after expanding aliases (a policy has about 40), and levels of nesting (a policy has 4).
MAX_NODES = 10_000
MAX_DEPTH = 32
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def shown(value: Any) -> str:
    """``value``'s repr, cut short in the middle: an error names what it got, not all of it."""
    return _REPR.repr(value)


def clip(text: str, limit: int = 200) -> str:
    """``text``, cut short in the middle if it is longer than ``limit``."""
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-(limit // 2) :]}"


class _Refused(Exception):
    """A bound was crossed while composing (raised inside PyYAML's composer, caught below)."""

    def __init__(self, mark: Any, problem: str) -> None:
        super().__init__(problem)
        self.mark = mark
        self.problem = problem


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting nodes as they are composed (an alias counts as its copy)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.nodes = 0
        self.depth = 0
        self.deepest = 0
        # id(node) -> (nodes in its subtree, aliases expanded; levels it spans), once composed.
        self.extent: dict[int, tuple[int, int]] = {}

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # The scanner looks ahead up to 1,024 characters for each open bracket that might start
        # a key, so "[[[[..." costs seconds before the composer sees a node: refuse it here.
        if self.flow_level >= MAX_DEPTH:
            raise _Refused(self.get_mark(), f"nested deeper than {MAX_DEPTH} levels")
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:
                extent = self.extent.get(id(target))
                if extent is None:
                    raise _Refused(
                        event.start_mark,
                        f"alias *{clip(str(event.anchor), 60)} refers to a node that contains it",
                    )
                self._grow(extent[0], self.depth + extent[1], event.start_mark)
            return super().compose_node(parent, index)
        self.depth += 1
        outer_deepest, self.deepest = self.deepest, self.depth
        before = self.nodes
        self._grow(1, self.depth, event.start_mark)
        node = super().compose_node(parent, index)
        self.extent[id(node)] = (self.nodes - before, self.deepest - self.depth + 1)
        self.deepest = max(outer_deepest, self.deepest)
        self.depth -= 1
        return node

    def _grow(self, nodes: int, depth: int, mark: Any) -> None:
        self.nodes += nodes
        self.deepest = max(self.deepest, depth)
        if depth > MAX_DEPTH:
            raise _Refused(mark, f"nested deeper than {MAX_DEPTH} levels")
        if self.nodes > MAX_NODES:
            raise _Refused(mark, f"more than {MAX_NODES:,} values once aliases are expanded (an alias bomb?)")


@dataclass(frozen=True)
class Document:
    """A composed YAML document: its plain value and the nodes it came from (for line numbers)."""

    data: Any
    root: yaml.Node | None
    source: str

    def line(self, path: tuple[str | int, ...], *, key: bool = False) -> int:
        """The 1-based line of the value at ``path`` (or of its key, with ``key``), else of the
        deepest node on the way there.

        A string step into a list finds the list's one-key mapping with that key: the
        ``- name: value`` shape policies use for their triggers and actions.
        """
        node = self.root
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for step in path:
            found: tuple[yaml.Node, yaml.Node] | None = None
            if isinstance(node, yaml.MappingNode) and isinstance(step, str):
                found = _pair(node, step)
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
                if 0 <= step < len(node.value):
                    found = (node.value[step], node.value[step])
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, str):
                for item in node.value:
                    if isinstance(item, yaml.MappingNode) and len(item.value) == 1:
                        found = found or _pair(item, step)
            if found is None:
                break
            key_node, node = found
            line = (key_node if key else node).start_mark.line + 1
        return line


def _pair(node: yaml.MappingNode, name: str) -> tuple[yaml.Node, yaml.Node] | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == name:
            return key_node, value_node
    return None


def load(raw: str | bytes, *, source: str) -> Document:
    """Compose ``raw`` (at most :data:`MAX_BYTES`, UTF-8 if bytes) into a :class:`Document`.

    Raises:
        ConfigError: ``source:line: problem`` — too large, not UTF-8, not YAML, an alias bomb,
            nesting past :data:`MAX_DEPTH`, a key that is not a plain name, a duplicate key.
    """
    too_large = len(raw) > MAX_BYTES or (
        isinstance(raw, str) and len(raw.encode("utf-8", "surrogatepass")) > MAX_BYTES
    )
    if too_large:
        raise ConfigError(f"{source}:1: larger than {MAX_BYTES:,} bytes, the most a policy may be")
    text = _decode(raw, source) if isinstance(raw, bytes) else raw
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # checks that every character is allowed in YAML
        root = loader.get_single_node()
        data = _Builder(loader).value(root) if root is not None else None
    except _Refused as refused:
        raise ConfigError(f"{source}:{refused.mark.line + 1}: {refused.problem}") from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        raise ConfigError(
            f"{source}:{line}: not valid YAML: character {error.character:#x} is not allowed"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else f"{source}:1"
        problem = ", ".join(filter(None, (getattr(error, "context", None), getattr(error, "problem", None))))
        raise ConfigError(f"{where}: not valid YAML: {clip(problem or str(error))}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return Document(data, root, source)


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{source}:{line}: not UTF-8 text (byte {raw[error.start]:#04x}); save the policy as UTF-8"
        ) from None


class _Builder:
    """Nodes to plain values: mappings with string keys, lists, and PyYAML's safe scalars."""

    def __init__(self, loader: _BoundedLoader) -> None:
        self.loader = loader

    def value(self, node: yaml.Node) -> Any:
        # Recursion is bounded: the composer refused anything deeper than MAX_DEPTH.
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if node.tag not in _PLAIN_TAGS:
            raise _Refused(node.start_mark, f"the tag {clip(node.tag, 60)} is not allowed here")
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item) for item in node.value]
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(key_node.start_mark, "a key must be a plain name, not a list or a mapping")
            if key_node.tag == _MERGE_TAG:
                raise _Refused(key_node.start_mark, "merge keys (<<) are not supported; write the keys out")
            key = self.scalar(key_node)
            if not isinstance(key, str):
                raise _Refused(key_node.start_mark, f"a key must be a name, got {shown(key)}")
            if key in mapping:
                raise _Refused(key_node.start_mark, f"{shown(key)} is given twice")
            mapping[key] = self.value(value_node)
        return mapping

    def scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            return self.loader.construct_object(node)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as error:  # e.g. an int of 5,000 digits
            reason = str(error).split(";")[0]
            raise _Refused(node.start_mark, f"cannot read {shown(node.value)}: {reason}") from None


__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "Document", "clip", "load", "shown"]
