"""The plugin's macros and Grafana's variables, substituted in panel SQL as they are at query time.

Panel SQL holds no values, only macros (``$__timeFilter(col)``, ``$__interval_s``...) and dashboard
variables (``$trace_id``); :func:`substitute_macros` turns it into the SQL the plugin sends to
ClickHouse, so that tests run every panel against a warehouse.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

_MACRO = re.compile(r"\$__(\w+)")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_CONDITIONAL_ALL = "$__conditionalAll("
_ARGUMENT_MACROS = frozenset(
    {"timeFilter", "timeFilter_ms", "dateFilter", "dateTimeFilter", "dt", "timeInterval", "timeInterval_ms"}
)


def _arguments(sql: str, open_paren: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose ``(`` is at ``open_paren``, and its end."""
    depth, start, args = 0, open_paren + 1, []
    for index in range(open_paren, len(sql)):
        char = sql[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:index])
                return args, index + 1
        elif char == "," and depth == 1:
            args.append(sql[start:index])
            start = index + 1
    raise ValueError(f"unbalanced parentheses after position {open_paren}: {sql[open_paren:][:80]!r}")


def _conditional_all(sql: str, variables: Mapping[str, str | Sequence[str]]) -> str:
    """``$__conditionalAll(condition, $var)``: the condition, or ``1=1`` when ``var`` is All or empty."""
    while (at := sql.rfind(_CONDITIONAL_ALL)) != -1:
        args, end = _arguments(sql, at + len(_CONDITIONAL_ALL) - 1)
        if len(args) != 2:
            raise ValueError(f"$__conditionalAll takes a condition and a variable, got {args}")
        match = _VARIABLE.search(args[1].strip())
        if not match or (name := match.group(1) or match.group(2)) not in variables:
            raise ValueError(f"$__conditionalAll names an unknown variable: {args[1].strip()!r}")
        value = variables[name]
        current = value if isinstance(value, str) else ",".join(value)
        sql = sql[:at] + ("1=1" if current in ("", "$__all") else args[0]) + sql[end:]
    return sql


def _variable_value(name: str, value: str | Sequence[str]) -> str:
    # The plugin's format(): a multi-value variable becomes a quoted list, a single value stays raw.
    if value == "$__all" or (not isinstance(value, str) and "$__all" in value):
        raise ValueError(f"variable {name} is All: pass its values, or use it inside $__conditionalAll")
    if isinstance(value, str):
        return value
    return "'" + "','".join(value) + "'"


def _seconds(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def _millis(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _date(moment: dt.datetime) -> str:
    return f"toDate('{moment.astimezone(dt.UTC):%Y-%m-%d}')"


def substitute_macros(
    sql: str,
    start: dt.datetime,
    end: dt.datetime,
    interval_s: float = 60,
    variables: Mapping[str, str | Sequence[str]] | None = None,
) -> str:
    """``sql`` as the plugin sends it to ClickHouse for the time range ``start``-``end``.

    In Grafana's order: ``$__conditionalAll`` and the dashboard's variables (``$name``,
    ``${name}``) first, then the plugin's macros: ``$__timeFilter(col)`` (``col >= toDateTime(<start s>)
    AND col <= toDateTime(<end s>)``), ``$__timeFilter_ms``, ``$__dateFilter``, ``$__dateTimeFilter`` /
    ``$__dt``, ``$__fromTime``, ``$__toTime`` (and ``_ms``), ``$__timeInterval(col)``,
    ``$__timeInterval_ms(col)`` and ``$__interval_s``.

    Args:
        sql: A panel's ``rawSql``.
        start: The range's start (timezone-aware).
        end: The range's end.
        interval_s: The panel's interval in seconds (at least 1, as the plugin rounds it).
        variables: Variable values: a string (substituted raw, as Grafana does) or a sequence
            (a multi-value selection, substituted as ``'a','b'``); ``"$__all"`` for All.

    Raises:
        ValueError: an unknown macro, wrong arguments, or an All variable outside
            ``$__conditionalAll``.
    """
    values = dict(variables or {})
    sql = _conditional_all(sql, values)

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name.startswith("__") or name not in values:
            return match.group(0)  # a macro, or unknown: Grafana leaves it as it is
        return _variable_value(name, values[name])

    sql = _VARIABLE.sub(variable, sql)
    interval = max(int(interval_s), 1)
    interval_ms = max(int(interval_s * 1000), 1)
    s, e = f"toDateTime({_seconds(start)})", f"toDateTime({_seconds(end)})"
    s_ms, e_ms = f"fromUnixTimestamp64Milli({_millis(start)})", f"fromUnixTimestamp64Milli({_millis(end)})"
    plain = {"fromTime": s, "toTime": e, "fromTime_ms": s_ms, "toTime_ms": e_ms, "interval_s": str(interval)}

    def with_arguments(name: str, args: list[str]) -> str:
        want = 2 if name in ("dateTimeFilter", "dt") else 1
        if len(args) != want:
            raise ValueError(f"$__{name} takes {want} argument(s), got {len(args)}")
        col = args[0].strip()
        if name == "timeFilter":
            return f"{col} >= {s} AND {col} <= {e}"
        if name == "timeFilter_ms":
            return f"{col} >= {s_ms} AND {col} <= {e_ms}"
        if name == "dateFilter":
            return f"{col} >= {_date(start)} AND {col} <= {_date(end)}"
        if name in ("dateTimeFilter", "dt"):
            time_col = args[1].strip()
            return (
                f"({col} >= {_date(start)} AND {col} <= {_date(end)}) AND "
                f"({time_col} >= {s} AND {time_col} <= {e})"
            )
        if name == "timeInterval":
            return f"toStartOfInterval(toDateTime({col}), INTERVAL {interval} second)"
        return f"toStartOfInterval(toDateTime64({col}, 3), INTERVAL {interval_ms} millisecond)"

    out, position = [], 0
    for match in _MACRO.finditer(sql):
        if match.start() < position:
            continue  # inside the arguments of a macro already expanded
        name = match.group(1)
        out.append(sql[position : match.start()])
        if name in plain:
            out.append(plain[name])
            position = match.end()
        elif name in _ARGUMENT_MACROS:
            if match.end() >= len(sql) or sql[match.end()] != "(":
                raise ValueError(f"$__{name} needs arguments")
            args, position = _arguments(sql, match.end())
            out.append(with_arguments(name, args))
        else:
            raise ValueError(f"unknown macro $__{name}")
    out.append(sql[position:])
    return "".join(out)


__all__ = ["substitute_macros"]
