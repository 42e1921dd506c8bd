"""What the SQL door (``POST /v1/sql``) may run, and under which limits.

The door is the boundary between the warehouse and any process that can reach the server, so it
decides by construction rather than by pattern matching:

* **ClickHouse parses, the guard reads the tree.** The query text goes to ClickHouse's own parser
  (``parseQueryToJSON``, which refuses multi-statements) and the guard walks the JSON syntax tree it
  returns. The door then runs *that tree* (the ``clickhouse_json`` dialect), not the text again: what
  ran is exactly what was checked. Parsing needs no parameter values, so a check is cached by query
  text; ``{name:Identifier}`` parameters are checked per call, as they name tables or columns.
* **Only reads.** One statement: ``SELECT`` (with ``WITH``, ``UNION``, ``INTERSECT``, ``EXCEPT``),
  ``EXPLAIN`` of such a select (AST, SYNTAX, QUERY TREE, PLAN, PIPELINE, ESTIMATE), ``SHOW TABLES``
  (and its variants ``SHOW DATABASES``...) and ``SHOW COLUMNS``. No ``INTO OUTFILE``, no ``FORMAT``
  (the door picks the format) and no ``SETTINGS`` at all, so no query can loosen its limits.
  ``DESCRIBE`` and ``EXISTS`` have no JSON form in ClickHouse and are refused: read
  ``system.columns`` / ``system.tables`` instead.
* **Every node type is allow-listed** (:data:`NODE_TYPES`): a construct this module has never seen,
  say one a newer ClickHouse adds, is refused until someone reads it and adds it.
* **Table functions are allow-listed** (:data:`TABLE_FUNCTIONS`): only ones that make rows out of
  nothing (``numbers``, ``generateSeries``, ``values``...). Every other one reaches a file, a process, the
  network, another database or Python objects of the server (``file``, ``url``, ``s3``, ``remote``,
  ``mysql``, ``executable``, ``merge``, ``dictionary``, chdb's ``python``...).
* **Functions come from the engine's catalog** (``system.functions``) minus :data:`DENIED_FUNCTIONS`
  (those that read the server's files, its configuration or its memory, write to Keeper, sleep, or
  read a table named in a string) and minus every user-defined function (their bodies are not in
  the tree). A name the catalog does not know (after stripping aggregate combinators such as
  ``-If`` and ``-State``) is refused too: it is a typo, or a table function used as a value.
* **Tables**: the server's own database, and the few ``system`` tables clients need to find their
  way (:data:`SYSTEM_TABLES`), never ``system.users``, ``system.processes`` (other clients' queries)
  or another database. A qualified name such as ``db.t.col`` whose head is another database is
  refused as well (``x IN other_db.t``); a table alias that shares a database's name is refused
  with it, which is the price of not guessing.

* **Writes** (``"readonly": false``, :func:`check_write`) are an allow-list too: one ``INSERT``
  into a table (``VALUES`` or ``SELECT``), ``CREATE TABLE``/``VIEW``/``MATERIALIZED VIEW`` on an
  engine of :data:`ENGINES`, ``ALTER TABLE`` of :data:`ALTER_COMMANDS`, ``DELETE FROM``,
  ``TRUNCATE``, ``DROP TABLE`` or ``OPTIMIZE``, of one table of the server's database. Every key
  of the statement's node is allow-listed (a clause this module has not read is refused), and
  everything below it (an ``INSERT``'s ``SELECT``, a view's query, defaults, predicates) is
  walked by the read rules. ``INSERT ... VALUES`` has no JSON form: the door reads its rows as
  the arguments of ``values()`` (see :class:`~omium.warehouse.door.SqlDoor`).

:class:`QueryLimits` are the per-query limits the door's read sessions run under; the
parser-level ban on ``SETTINGS`` and the engine's ``readonly`` mode keep a query from changing them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from omium.errors import ConfigError, QueryRefused, WarehouseError

_SELECTS = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery"})
STATEMENTS = _SELECTS | frozenset({"ExplainQuery", "ShowTablesQuery", "ShowColumnsQuery"})
EXPLAIN_KINDS = frozenset(
    {
        "EXPLAIN",
        "EXPLAIN AST",
        "EXPLAIN SYNTAX",
        "EXPLAIN QUERY TREE",
        "EXPLAIN PLAN",
        "EXPLAIN PIPELINE",
        "EXPLAIN ESTIMATE",
    }
)
NODE_TYPES = STATEMENTS | frozenset(
    {
        "SelectQuery",
        "Subquery",
        "WithElement",
        "ExpressionList",
        "Literal",
        "Identifier",
        "QueryParameter",
        "Function",
        "Asterisk",
        "QualifiedAsterisk",
        "ColumnsRegexpMatcher",
        "ColumnsListMatcher",
        "QualifiedColumnsRegexpMatcher",
        "QualifiedColumnsListMatcher",
        "ColumnsTransformerList",
        "ColumnsApplyTransformer",
        "ColumnsExceptTransformer",
        "ColumnsReplaceTransformer",
        "ColumnsReplaceTransformerReplacement",
        "TablesInSelectQuery",
        "TablesInSelectQueryElement",
        "TableExpression",
        "TableIdentifier",
        "TableJoin",
        "ArrayJoin",
        "SampleRatio",
        "OrderByElement",
        "InterpolateElement",
        "WindowDefinition",
        "WindowListElement",
    }
)
# Clauses a select may carry only at the top, and which the door never takes from the client.
_OUTPUT_CLAUSES = {
    "out_file": "INTO OUTFILE",
    "format_ast": "a FORMAT clause (the door answers Arrow, or JSON on 'Accept: application/json')",
    "settings_ast": "a SETTINGS clause",
    "compression": "INTO OUTFILE ... COMPRESSION",
}
# zeros() is harmless too, but the engine refuses it in readonly mode: system.zeros is the same.
TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "generateSeries", "generate_series", "values", "null"})
SYSTEM_TABLES = frozenset(
    {
        "one",
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "databases",
        "tables",
        "columns",
        "functions",
        "table_functions",
        "aggregate_function_combinators",
        "data_type_families",
        "formats",
        "time_zones",
    }
)
_READS_FILES = "reads the server's files"
_INTROSPECTION = "looks into the server process"
_MODELS = "loads a model from the server's disk"
DENIED_FUNCTIONS: Mapping[str, str] = {
    "file": _READS_FILES,
    "showCertificate": _READS_FILES,
    "filesystemAvailable": "reports on the server's disks",
    "filesystemCapacity": "reports on the server's disks",
    "filesystemUnreserved": "reports on the server's disks",
    "getServerSetting": "reads the server's configuration",
    "getServerPort": "reports the server's ports",
    "addressToLine": _INTROSPECTION,
    "addressToLineWithInlines": _INTROSPECTION,
    "addressToSymbol": _INTROSPECTION,
    "demangle": _INTROSPECTION,
    "logTrace": "writes to the server's log",
    "flameGraph": _INTROSPECTION,
    "catboostEvaluate": _MODELS,
    "naiveBayesClassifier": _MODELS,
    "naiveBayesClassifierWithProb": _MODELS,
    "naiveBayesClassifierWithAllProbs": _MODELS,
    "joinGet": "reads a table named in a string, around the table check",
    "joinGetOrNull": "reads a table named in a string, around the table check",
    "generateSerialID": "writes to Keeper",
    "sleep": "holds a reader without doing any work",
    "sleepEachRow": "holds a reader without doing any work",
}
# Names the analyzer resolves itself: they are in no catalog.
_SYNTAX_FUNCTIONS = frozenset({"lambda", "exists", "untuple", "grouping"})
# An Identifier parameter is one name (ClickHouse quotes a dotted value whole): a plain one here.
_PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")

# --- Writes (``"readonly": false``): what the product sends, and obvious siblings.
WRITE_STATEMENTS = frozenset(
    {"InsertQuery", "CreateQuery", "AlterQuery", "DropQuery", "OptimizeQuery", "DeleteQuery"}
)
WRITE_NODE_TYPES = NODE_TYPES | frozenset(
    {
        "Columns definition",
        "ColumnDeclaration",
        "DataType",
        "EnumDataType",
        "TupleDataType",
        "NameTypePair",
        "IndexDeclaration",
        "ConstraintDeclaration",
        "ProjectionDeclaration",
        "ProjectionSelectQuery",
        "Storage",
        "TTLElement",
        "AlterCommand",
        "Assignment",
        "Partition",
    }
)
# Engines that keep their rows in the server's own storage (never a file, URL, other server,
# other database, process or dictionary); Replicated* would reach Keeper.
ENGINES = frozenset(
    {
        "MergeTree",
        "ReplacingMergeTree",
        "SummingMergeTree",
        "AggregatingMergeTree",
        "CollapsingMergeTree",
        "VersionedCollapsingMergeTree",
        "Memory",
        "Null",
        "Log",
        "TinyLog",
        "StripeLog",
    }
)
CODECS = frozenset({"NONE", "LZ4", "LZ4HC", "ZSTD", "Delta", "DoubleDelta", "Gorilla", "FPC", "T64", "GCD"})
INDEX_TYPES = frozenset({"minmax", "set", "bloom_filter", "ngrambf_v1", "tokenbf_v1"})
ALTER_COMMANDS = frozenset(
    {"ADD_COLUMN", "DROP_COLUMN", "MODIFY_COLUMN", "RENAME_COLUMN", "COMMENT_COLUMN", "DELETE", "UPDATE"}
)
_ALTER_KEYS = frozenset(
    {
        "type",
        "command_type",
        "col_decl",
        "column",
        "rename_to",
        "comment",
        "predicate",
        "update_assignments",
        "partition",
        "remove_property",
        "replace",
        "first",
        "if_exists",
        "if_not_exists",
    }
)
_ALTER_OFF = frozenset(
    {"detach", "part", "clear_column", "clear_index", "clear_statistics", "clear_projection"}
)
_TTL_DELETE = ("DELETE", "DELETE")  # (mode, destination): rows past their TTL are deleted, nothing else
# What a function is, by where it sits (parent node type, key): the default is a value.
_PLACES: Mapping[tuple[str, str], str] = {
    ("TableExpression", "table_function"): "table_function",
    ("Storage", "engine"): "engine",
    ("ColumnDeclaration", "codec"): "codec",
    ("IndexDeclaration", "index_type"): "index",
    ("ColumnDeclaration", "data_type"): "type",
}
_NAMED_PLACES: Mapping[str, tuple[str, frozenset[str]]] = {
    "engine": ("table engine", ENGINES),
    "codec": ("codec", CODECS),
    "index": ("index type", INDEX_TYPES),
}
# A write statement's keys: "target" (checked as its target), a place (its subtree is walked),
# the scalar values allowed, or None (any scalar). Every other key is refused.
_TARGET = "target"
_OFF = frozenset({False})
_NOTHING: frozenset[Any] = frozenset()
_Rule = str | frozenset[Any] | None
_EVERY_WRITE: Mapping[str, _Rule] = {
    "type": None,
    "is_outfile_append": _OFF,
    "is_outfile_truncate": _OFF,
    "is_into_outfile_with_stdout": _OFF,
}
_NAMED_TARGET: Mapping[str, _Rule] = {"database": _TARGET, "table": _TARGET}
_DDL_TARGET: Mapping[str, _Rule] = {**_NAMED_TARGET, "database_ast": _TARGET, "table_ast": _TARGET}
_WRITES: Mapping[str, Mapping[str, _Rule]] = {
    "InsertQuery": {**_NAMED_TARGET, "columns": "value", "select": "value"},
    "CreateQuery": {
        **_DDL_TARGET,
        **dict.fromkeys(
            ("if_not_exists", "is_ordinary_view", "is_materialized_view", "is_populate", "is_create_empty")
        ),
        **dict.fromkeys(("columns_list", "storage", "select", "comment"), "value"),
        "targets": _TARGET,
        **dict.fromkeys(
            (
                "attach",
                "is_time_series_table",
                "is_clone_as",
                "replace_view",
                "has_uuid",
                "has_uuid_clause",
                "has_inner_uuid_clause",
                "is_dictionary",
                "replace_table",
                "create_or_replace",
                "has_attach_from_path",
                "is_temporary",
            ),
            _OFF,
        ),
    },
    "AlterQuery": {**_DDL_TARGET, "alter_object": frozenset({"TABLE"}), "command_list": "value"},
    "DropQuery": {
        **_DDL_TARGET,
        "kind": frozenset({"Drop", "Truncate"}),
        **dict.fromkeys(("if_exists", "if_empty", "is_view", "sync")),
        **dict.fromkeys(
            (
                "has_all",
                "has_tables",
                "not_like",
                "case_insensitive_like",
                "is_dictionary",
                "permanently",
                "is_temporary",
            ),
            _OFF,
        ),
    },
    "OptimizeQuery": {
        **_NAMED_TARGET,
        **dict.fromkeys(("partition", "deduplicate_by_columns"), "value"),
        **dict.fromkeys(("final", "deduplicate", "cleanup")),
    },
    "DeleteQuery": {**_NAMED_TARGET, "partition": "value", "predicate": "value"},
}
# How a refused key reads in the answer.
_WRITE_CLAUSES: Mapping[str, str] = {
    "table_function": "INSERT INTO FUNCTION",
    "infile": "FROM INFILE",
    "compression": "COMPRESSION",
    "settings_ast": "a SETTINGS clause",
    "format": "inline data other than VALUES (send Arrow to /v1/insert)",
    "attach": "ATTACH",
    "is_temporary": "a TEMPORARY table",
    "replace_table": "CREATE OR REPLACE",
    "create_or_replace": "CREATE OR REPLACE",
    "replace_view": "CREATE OR REPLACE VIEW",
    "is_dictionary": "a DICTIONARY",
    "as_table_function": "CREATE TABLE ... AS a table function",
    "as_table": "CREATE TABLE ... AS another table",
    "as_database": "CREATE TABLE ... AS another table",
    "is_clone_as": "CLONE AS",
    "uuid": "a UUID clause",
    "has_uuid": "a UUID clause",
    "has_uuid_clause": "a UUID clause",
    "has_inner_uuid_clause": "a UUID clause",
    "refresh_strategy": "a refreshable materialized view (REFRESH)",
    "sql_security": "DEFINER / SQL SECURITY",
    "cluster": "ON CLUSTER",
    "has_all": "ALL TABLES",
    "has_tables": "ALL TABLES",
    "database_and_tables": "several tables in one statement",
    "is_time_series_table": "a TimeSeries table",
    "has_attach_from_path": "ATTACH ... FROM a path",
    "permanently": "DETACH PERMANENTLY",
    "alter_object": "ALTER of anything but a table",
}
WRITES_ALLOWED = (
    "it writes with INSERT INTO a table (VALUES or SELECT), CREATE TABLE / VIEW / MATERIALIZED VIEW, "
    "ALTER TABLE (ADD, DROP, MODIFY, RENAME, COMMENT COLUMN; DELETE; UPDATE), DELETE FROM, TRUNCATE, "
    "DROP TABLE and OPTIMIZE, in the server's database"
)

FUNCTIONS_SQL = "SELECT name, is_aggregate, case_insensitive, alias_to, origin FROM system.functions"
COMBINATORS_SQL = "SELECT name FROM system.aggregate_function_combinators"


def _positive(env: Mapping[str, str], name: str, default: float, kind: type[int] | type[float]) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if not 0 < value < float("inf"):
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class QueryLimits:
    """Per-query limits of the SQL door, enforced by ClickHouse on the door's sessions.

    A query past a limit is stopped by the engine and answered 422 naming the limit.

    Attributes:
        max_execution_seconds: Wall time (``max_execution_time``).
        max_memory_bytes: Memory of one query (``max_memory_usage``).
        max_result_rows: Rows of the answer (``max_result_rows``).
        max_result_bytes: Uncompressed bytes of the answer (``max_result_bytes``).
        max_threads: Threads one query may use (``max_threads``).
    """

    max_execution_seconds: float = 30.0
    max_memory_bytes: int = 1 << 30
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 256 << 20
    max_threads: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QueryLimits:
        """Read ``OMIUM_SQL_MAX_EXECUTION_SECONDS``, ``OMIUM_SQL_MAX_MEMORY_BYTES``,
        ``OMIUM_SQL_MAX_RESULT_ROWS``, ``OMIUM_SQL_MAX_RESULT_BYTES`` and ``OMIUM_SQL_MAX_THREADS``.

        Raises:
            ConfigError: a value is not a positive number (integer, but for the seconds).
        """
        default = cls()
        return cls(
            max_execution_seconds=_positive(
                env, "OMIUM_SQL_MAX_EXECUTION_SECONDS", default.max_execution_seconds, float
            ),
            max_memory_bytes=_positive(env, "OMIUM_SQL_MAX_MEMORY_BYTES", default.max_memory_bytes, int),
            max_result_rows=_positive(env, "OMIUM_SQL_MAX_RESULT_ROWS", default.max_result_rows, int),
            max_result_bytes=_positive(env, "OMIUM_SQL_MAX_RESULT_BYTES", default.max_result_bytes, int),
            max_threads=_positive(env, "OMIUM_SQL_MAX_THREADS", default.max_threads, int),
        )

    def settings(self) -> dict[str, int | float | str]:
        """The ClickHouse settings that enforce these limits."""
        return {
            "max_execution_time": self.max_execution_seconds,
            "timeout_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_bytes,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
            "max_threads": self.max_threads,
        }


@dataclass(frozen=True)
class Catalog:
    """The engine's functions, as the guard needs them (read once per door).

    Attributes:
        names: Every function name (aliases included) -> the name it resolves to.
        folded: Lower-cased names of case-insensitive functions -> the name they resolve to.
        aggregates: Resolved names of aggregate functions.
        user_defined: Resolved names of functions that are not ClickHouse's own.
        combinators: Aggregate combinator suffixes (``If``, ``State``...), longest first.
    """

    names: Mapping[str, str]
    folded: Mapping[str, str]
    aggregates: frozenset[str]
    user_defined: frozenset[str]
    combinators: tuple[str, ...]
    _memo: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_rows(cls, functions: Iterable[Mapping[str, Any]], combinators: Iterable[str]) -> Catalog:
        """Build from the rows of :data:`FUNCTIONS_SQL` and the names of :data:`COMBINATORS_SQL`."""
        names: dict[str, str] = {}
        folded: dict[str, str] = {}
        aggregates: set[str] = set()
        user_defined: set[str] = set()
        for row in functions:
            name, target = str(row["name"]), str(row["alias_to"] or row["name"])
            names[name] = target
            if row["case_insensitive"]:
                folded[name.lower()] = target
            if row["is_aggregate"]:
                aggregates.add(target)
            if row["origin"] != "System":
                user_defined.add(target)
        return cls(
            names=names,
            folded=folded,
            aggregates=frozenset(aggregates),
            user_defined=frozenset(user_defined),
            combinators=tuple(sorted(combinators, key=len, reverse=True)),
        )

    def resolve(self, name: str) -> str | None:
        """The function ``name`` calls (an aggregate's, for a combinator form), or None if unknown."""
        if name in self._memo:
            return self._memo[name]
        found = self.names.get(name) or self.folded.get(name.lower())
        if found is None:
            for suffix in self.combinators:
                if len(name) > len(suffix) and name.endswith(suffix):
                    base = self.resolve(name[: -len(suffix)])
                    if base is not None and base in self.aggregates:
                        found = base
                        break
        self._memo[name] = found
        return found


@dataclass(frozen=True)
class CheckedQuery:
    """A statement the guard let through, with what remains to check once values are known.

    Attributes:
        statement: Its node type (``SelectWithUnionQuery``, ``ExplainQuery``...).
        parameters: Names of its ``{name:Type}`` parameters.
        identifier_parameters: Names of its ``{name:Identifier}`` parameters.
        qualified: ``(head, next)`` of dotted names whose head may be a database (``db.t.col``).
    """

    statement: str
    parameters: frozenset[str]
    identifier_parameters: frozenset[str]
    qualified: frozenset[tuple[str, str]]


def statement_name(node_type: str) -> str:
    """``KillQueryQuery`` -> ``KILL QUERY``: a node type as the SQL a person typed."""
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+", node_type.removesuffix("Query"))
    return " ".join(words).upper() or node_type


def check_table(parts: list[str], *, database: str) -> None:
    """Refuse a table outside the server's database and the allowed ``system`` tables."""
    if len(parts) == 1 and parts[0]:
        return  # the session's database (the server's), or a WITH name
    if len(parts) == 2 and (parts[0] == database or (parts[0] == "system" and parts[1] in SYSTEM_TABLES)):
        return
    raise QueryRefused(
        f"table {'.'.join(parts)!r} is not readable through this door: it reads the server's "
        f"database ({database!r}) and system.{{{', '.join(sorted(SYSTEM_TABLES))}}}"
    )


def _check_function(name: str, catalog: Catalog) -> None:
    if name in _SYNTAX_FUNCTIONS:
        return
    resolved = catalog.resolve(name)
    reason = DENIED_FUNCTIONS.get(name) or DENIED_FUNCTIONS.get(resolved or name)
    if reason is None and resolved is None:
        raise WarehouseError(f"unknown function {name!r} (or a table function used as a value)")
    resolved = resolved or name
    if reason is None and resolved.startswith("__"):
        reason = "is one of ClickHouse's internal helpers"
    if reason is None and resolved in catalog.user_defined:
        reason = "is user-defined: what it calls is not in the query"
    if reason is not None:
        raise QueryRefused(f"function {name!r} is not allowed on this door: it {reason}")


def _children(node: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        if isinstance(value, (dict, list)):
            yield key, value


def _name(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    return ".".join(str(p) for p in node.get("name_parts") or [node.get("name") or ""])


@dataclass
class _Walk:
    """One check of a tree: the rules it walks by, and what it found for :class:`CheckedQuery`."""

    database: str
    catalog: Catalog
    node_types: frozenset[str]
    parameters: set[str] = field(default_factory=set)
    identifiers: set[str] = field(default_factory=set)
    qualified: set[tuple[str, str]] = field(default_factory=set)

    def checked(self, statement: str) -> CheckedQuery:
        return CheckedQuery(
            statement=statement,
            parameters=frozenset(self.parameters),
            identifier_parameters=frozenset(self.identifiers),
            qualified=frozenset(self.qualified),
        )

    def function(self, place: str, name: str) -> None:
        if place == "table_function":
            if name not in TABLE_FUNCTIONS:
                allowed = ", ".join(sorted(TABLE_FUNCTIONS))
                raise QueryRefused(f"table function {name!r} is not allowed on this door; it has {allowed}")
        elif place in _NAMED_PLACES:
            what, names = _NAMED_PLACES[place]
            if name not in names and not (place == "codec" and name == "CODEC"):
                allowed = ", ".join(sorted(names))
                raise QueryRefused(f"{what} {name!r} is not allowed on this door; it has {allowed}")
        else:
            _check_function(name, self.catalog)

    def walk(self, root: Any, place: str = "value") -> None:
        """Check every node under ``root``; ``place`` says what a function there is (:data:`_PLACES`)."""
        stack: list[tuple[Any, str]] = [(root, place)]
        while stack:
            item, place = stack.pop()
            if isinstance(item, list):
                stack.extend((child, place) for child in item)
                continue
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind is None:  # not a node (a window frame, say): look inside all the same
                stack.extend((child, "value") for _, child in _children(item))
                continue
            if kind not in self.node_types:
                what = "a SETTINGS clause" if kind == "SetQuery" else f"{kind!r}"
                raise QueryRefused(f"{what} is not allowed on this door")
            for key, clause in _OUTPUT_CLAUSES.items():
                if item.get(key) is not None:
                    raise QueryRefused(f"{clause} is not allowed on this door")
            if kind == "Literal":
                continue  # data, not syntax
            if kind == "QueryParameter":
                name = str(item.get("name", ""))
                self.parameters.add(name)
                if item.get("param_type") == "Identifier":
                    self.identifiers.add(name)
                continue
            if kind == "Function":
                self.function(place, str(item.get("name", "")))
            elif kind == "ColumnsApplyTransformer" and item.get("func_name"):
                _check_function(str(item["func_name"]), self.catalog)
            elif kind in ("TableIdentifier", "Identifier"):
                self.identifier(kind, item, place)
            elif kind == "AlterCommand":
                _check_alter_command(item)
            elif kind == "TTLElement" and (item.get("mode"), item.get("destination_type")) != _TTL_DELETE:
                raise QueryRefused("a TTL that moves, recompresses or groups rows is not allowed here")
            for key, child in _children(item):
                inherited = place if place in ("type", "codec") else "value"
                stack.append((child, _PLACES.get((kind, key), inherited)))

    def identifier(self, kind: str, item: Mapping[str, Any], place: str) -> None:
        parts = [str(p) for p in item.get("name_parts") or ([item["name"]] if item.get("name") else [])]
        if item.get("children") and parts:
            raise QueryRefused(
                f"name {'.'.join(parts)!r} is part text, part parameter: on this door an "
                "Identifier parameter stands for the whole name"
            )
        if kind == "TableIdentifier" and parts:
            check_table(parts, database=self.database)
        elif place == "type" and parts:
            _check_function(parts[-1], self.catalog)  # AggregateFunction(uniq, String)
        elif len(parts) > 1 and parts[0] != self.database:
            self.qualified.add((parts[0], parts[1]))

    def target(self, ast: Mapping[str, Any], what: str) -> None:
        """A write's table: one table (a plain name or an Identifier parameter) of the server's database."""
        db, table = ast.get("database"), ast.get("table")
        named = db if isinstance(db, str) else ""
        if isinstance(db, str) or isinstance(table, str):  # CREATE, ALTER, DROP: names and their nodes
            db, table = ast.get("database_ast"), ast.get("table_ast")
        if not isinstance(table, dict) or not (table.get("name") or table.get("children")):
            name = named or _name(db)
            whole = f"{what} of a whole database" + (f" ({name!r})" if name else "")
            raise QueryRefused(f"{whole} is not allowed on this door: {WRITES_ALLOWED}")
        if named not in ("", self.database):
            raise _other_database(what, named, self.database)
        if db is not None and (not isinstance(db, dict) or db.get("children") or _name(db) != self.database):
            raise _other_database(what, _name(db), self.database)
        if "." in _name(table):
            raise QueryRefused(f"{what} of {_name(table)!r} is not allowed on this door: {WRITES_ALLOWED}")
        self.walk(table)

    def view_targets(self, targets: Any) -> None:
        """A materialized view's ``TO`` table (of the server's database) or inner engine."""
        if not isinstance(targets, dict) or set(targets) - {"type", "targets"}:
            raise QueryRefused("this materialized view's targets are not allowed on this door")
        for target in targets.get("targets") or []:
            if not isinstance(target, dict) or target.get("kind") != "To":
                raise QueryRefused("a materialized view writes TO a table or to an inner table on this door")
            for key, value in target.items():
                if key == "inner_engine":
                    self.walk(value)
                elif key == "table_database" and value not in ("", self.database):
                    raise _other_database("a materialized view's TO", str(value), self.database)
                elif key not in ("kind", "table_database", "table_name"):
                    raise QueryRefused(f"a materialized view with {key!r} is not allowed on this door")


def check_statement(ast: Mapping[str, Any], *, database: str, catalog: Catalog) -> CheckedQuery:
    """Check a statement's syntax tree (as ``parseQueryToJSON`` gives it).

    Args:
        ast: The tree.
        database: The server's database, the one the door reads.
        catalog: The engine's functions.

    Returns:
        What is left to check per call (:func:`check_values`).

    Raises:
        QueryRefused: The statement is not a read, or reaches outside the warehouse.
        WarehouseError: It calls a function the engine does not have.
    """
    statement = str(ast.get("type"))
    if statement not in STATEMENTS:
        raise QueryRefused(
            f"{statement_name(statement)} is not allowed on this read-only door: it runs SELECT (WITH, "
            "UNION...), EXPLAIN of a SELECT, SHOW TABLES and SHOW COLUMNS"
        )
    if statement == "ExplainQuery":
        kind = ast.get("kind")
        explained = ast.get("query")
        explained_type = explained.get("type") if isinstance(explained, dict) else None
        if kind not in EXPLAIN_KINDS or explained_type not in _SELECTS:
            raise QueryRefused(f"{kind} is not allowed on this door: it explains SELECT statements only")
    if statement == "ShowColumnsQuery":
        table = [str(ast.get("table", ""))]
        check_table([str(ast["database"]), *table] if ast.get("database") else table, database=database)
    walk = _Walk(database, catalog, NODE_TYPES)
    walk.walk(ast)
    return walk.checked(statement)


def _check_alter_command(command: Mapping[str, Any]) -> None:
    kind = str(command.get("command_type")).replace("_", " ")
    if kind.replace(" ", "_") not in ALTER_COMMANDS:
        allowed = ", ".join(sorted(c.replace("_", " ") for c in ALTER_COMMANDS))
        raise QueryRefused(f"ALTER TABLE ... {kind} is not allowed on this door; it has {allowed}")
    for key, value in command.items():
        if key not in _ALTER_KEYS and not (key in _ALTER_OFF and value is False):
            raise QueryRefused(f"ALTER TABLE ... {kind} with {key!r} is not allowed on this door")


def _other_database(what: str, name: str, database: str) -> QueryRefused:
    return QueryRefused(
        f"{what} in database {name or 'a parameter'!r} is not allowed on this door: it writes the "
        f"server's database ({database!r}) only"
    )


def check_write(ast: Mapping[str, Any], *, database: str, catalog: Catalog) -> CheckedQuery:
    """Check a write's syntax tree (``"readonly": false``): one statement of :data:`WRITE_STATEMENTS`.

    Every key of the statement is allow-listed (``_WRITES``): its target is one table of the
    server's database; table engines, codecs, index types and ALTER commands come from short lists
    (:data:`ENGINES`, :data:`CODECS`, :data:`INDEX_TYPES`, :data:`ALTER_COMMANDS`); everything
    inside (an INSERT's or a view's SELECT, defaults, predicates) is checked by the read rules.

    Args:
        ast: The tree.
        database: The server's database.
        catalog: The engine's functions.

    Returns:
        What is left to check per call (:func:`check_values`).

    Raises:
        QueryRefused: The statement is not an allowed write, or reaches outside the warehouse.
        WarehouseError: It calls a function the engine does not have.
    """
    statement = str(ast.get("type"))
    spec = _WRITES.get(statement)
    if spec is None:
        if statement in STATEMENTS:  # name what a read would be refused for, if anything
            check_statement(ast, database=database, catalog=catalog)
            raise QueryRefused('a read is not allowed as a write: send it without "readonly": false')
        raise QueryRefused(f"{statement_name(statement)} is not allowed on this door: {WRITES_ALLOWED}")
    what = "TRUNCATE" if ast.get("kind") == "Truncate" else statement_name(statement)
    walk = _Walk(database, catalog, WRITE_NODE_TYPES)
    # Inline data last: an INSERT ... FROM INFILE is refused for its INFILE.
    for key, value in sorted(ast.items(), key=lambda item: item[0] == "format"):
        rule = _EVERY_WRITE[key] if key in _EVERY_WRITE else spec.get(key, _NOTHING)
        if rule == _TARGET:
            continue
        if isinstance(rule, str):
            walk.walk(value, rule)
            continue
        if not isinstance(value, (dict, list)) and (rule is None or value in rule):
            continue
        clause = str(value).upper() if key == "kind" else _WRITE_CLAUSES.get(key, f"{what} with {key!r}")
        raise QueryRefused(f"{clause} is not allowed on this door")
    walk.target(ast, what)
    if "targets" in ast:
        walk.view_targets(ast["targets"])
    return walk.checked(statement)


@dataclass(frozen=True)
class InsertTarget:
    """Where an ``INSERT ... VALUES`` writes (read from its head, without its rows).

    Attributes:
        table: The table's name, or None when an Identifier parameter names it.
        parameter: That parameter's name.
        columns: The columns listed, or None for all the table's own.
    """

    table: str | None
    parameter: str | None
    columns: tuple[str, ...] | None


def insert_target(head: Mapping[str, Any], *, database: str) -> InsertTarget:
    """The target of an ``INSERT ... VALUES`` head (``INSERT INTO t (a, b) VALUES``, rows cut off).

    Raises:
        QueryRefused: It writes another database, or its columns are not plain names.
    """
    db, table = head.get("database"), head.get("table")
    if db is not None and (not isinstance(db, dict) or db.get("children") or _name(db) != database):
        raise _other_database("INSERT", _name(db), database)
    if not isinstance(table, dict):
        raise QueryRefused(f"this INSERT is not allowed on this door: {WRITES_ALLOWED}")
    children = table.get("children") or []
    parameter = str(children[0].get("name")) if len(children) == 1 and isinstance(children[0], dict) else None
    columns = None
    if head.get("columns") is not None:
        listed = head["columns"].get("children") or []
        if not all(isinstance(c, dict) and c.get("type") == "Identifier" and c.get("name") for c in listed):
            raise QueryRefused("an INSERT ... VALUES names its columns plainly on this door, or lists none")
        columns = tuple(str(c["name"]) for c in listed)
    return InsertTarget(table=None if parameter else _name(table), parameter=parameter, columns=columns)


def check_identifier(name: str, value: Any) -> str:
    """An ``{name:Identifier}`` parameter's value: one plain name (a table of the server's database
    or a column), or refused."""
    if not isinstance(value, str) or not _PLAIN_IDENTIFIER.fullmatch(value):
        raise QueryRefused(
            f"parameter {name!r} is an Identifier: on this door it takes one plain name "
            f"(letters, digits and '_'), got {value!r}"
        )
    return value


def check_values(
    checked: CheckedQuery,
    parameters: Mapping[str, Any],
    *,
    database: str,
    databases: Callable[[], frozenset[str]],
) -> None:
    """The per-call part of the check: ``{name:Identifier}`` values, and dotted names' heads.

    A plain name stands for a table of the server's database (the session's) or a column, so an
    Identifier parameter's value needs no other check.

    Args:
        checked: What :func:`check_statement` returned.
        parameters: The call's parameter values.
        database: The server's database.
        databases: Reads the engine's database names (called only when a name needs it).

    Raises:
        QueryRefused: A name reaches another database or a table outside the allowed ones.
    """
    for name in checked.identifier_parameters:
        check_identifier(name, parameters.get(name))
    if not checked.qualified:
        return
    known = databases()
    for head, after in sorted(checked.qualified):
        if head in known and not (head == "system" and after in SYSTEM_TABLES):
            raise QueryRefused(
                f"name '{head}.{after}' reaches database {head!r}: this door reads the server's "
                f"database ({database!r}) only"
            )


__all__ = [
    "ALTER_COMMANDS",
    "CODECS",
    "COMBINATORS_SQL",
    "DENIED_FUNCTIONS",
    "ENGINES",
    "EXPLAIN_KINDS",
    "FUNCTIONS_SQL",
    "INDEX_TYPES",
    "NODE_TYPES",
    "STATEMENTS",
    "SYSTEM_TABLES",
    "TABLE_FUNCTIONS",
    "WRITES_ALLOWED",
    "WRITE_NODE_TYPES",
    "WRITE_STATEMENTS",
    "Catalog",
    "CheckedQuery",
    "InsertTarget",
    "QueryLimits",
    "check_identifier",
    "check_statement",
    "check_table",
    "check_values",
    "check_write",
    "insert_target",
    "statement_name",
]
