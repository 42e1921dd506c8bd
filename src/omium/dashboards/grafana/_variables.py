"""Dashboard variables: the data source picker, SQL query, text box and custom-list variables."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from ._plugin import DATASOURCE_NAME, DATASOURCE_REF, DATASOURCE_UID, PLUGIN_ID, Json

# The first variable of every dashboard: which data source of the plugin its panels read.
DATASOURCE_VARIABLE: Json = {
    "type": "datasource",
    "name": "datasource",
    "label": "Data source",
    "query": PLUGIN_ID,
    "current": {"selected": False, "text": DATASOURCE_NAME, "value": DATASOURCE_UID},
    "hide": 0,
    "includeAll": False,
    "multi": False,
    "options": [],
    "refresh": 1,
    "regex": "",
    "skipUrlSync": False,
}


def query_variable(name: str, label: str, sql: str, *, multi: bool = False) -> Json:
    """A variable whose options are the rows of ``sql``; ``multi`` also offers All, selected at first."""
    sql = textwrap.dedent(sql).strip()
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DATASOURCE_REF,
        "definition": sql,
        "query": sql,
        "refresh": 2,  # on time range change
        "sort": 0,
        "multi": multi,
        "includeAll": multi,
        "allowCustomValue": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {},
        "options": [],
        "hide": 0,
        "regex": "",
        "skipUrlSync": False,
    }


def textbox_variable(name: str, label: str) -> Json:
    """A free-text variable, empty at first."""
    return {
        "type": "textbox",
        "name": name,
        "label": label,
        "query": "",
        "current": {"selected": False, "text": "", "value": ""},
        "options": [],
        "hide": 0,
        "skipUrlSync": False,
    }


def custom_variable(name: str, label: str, values: Sequence[str]) -> Json:
    """A single-choice variable over ``values``, the first selected."""
    options = [{"selected": index == 0, "text": value, "value": value} for index, value in enumerate(values)]
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "current": {"selected": True, "text": values[0], "value": values[0]},
        "options": options,
        "multi": False,
        "includeAll": False,
        "hide": 0,
        "skipUrlSync": False,
    }


__all__ = ["DATASOURCE_VARIABLE", "custom_variable", "query_variable", "textbox_variable"]
