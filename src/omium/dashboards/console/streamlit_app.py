"""The console's router: ``streamlit run streamlit_app.py``.

Every page has a URL of its own (``/monitoring``, ``/runs``, ``/run?run=ID``, ...). The root URL
is a hidden page that routes: with ``?run=ID`` (the link in pause notifications) it opens that
run's detail page, otherwise Monitoring, in both cases keeping the query string.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "app_pages"

st.set_page_config(page_title="Omium console", page_icon=":material/shield:", layout="wide")

monitoring = st.Page(
    PAGES / "monitoring.py", title="Monitoring", icon=":material/monitoring:", url_path="monitoring"
)
runs = st.Page(PAGES / "runs.py", title="Runs", icon=":material/list_alt:", url_path="runs")
run_detail = st.Page(PAGES / "run_detail.py", title="Run detail", icon=":material/search:", url_path="run")
recovery = st.Page(
    PAGES / "recovery.py", title="Recovery queue", icon=":material/build:", url_path="recovery"
)
replay = st.Page(PAGES / "replay.py", title="Replay", icon=":material/replay:", url_path="replay")
setup = st.Page(PAGES / "setup.py", title="Setup", icon=":material/settings:", url_path="setup")
trace = st.Page(PAGES / "trace.py", title="Trace", icon=":material/account_tree:", url_path="trace")
session = st.Page(PAGES / "session.py", title="Session", icon=":material/forum:", url_path="session")


def home() -> None:
    """``/``: a notification's ``?run=ID`` opens that run; anything else opens Monitoring.

    The default page is served at ``/`` only (its own url_path is ignored), so Monitoring is not
    the default: it keeps ``/monitoring``. ``switch_page`` is given the query string, which it
    would otherwise drop (the run's id with it).
    """
    params = st.query_params.to_dict()
    st.switch_page(run_detail if "run" in params else monitoring, query_params=params)


start = st.Page(home, title="Omium", url_path="home", default=True, visibility="hidden")
page = st.navigation([start, monitoring, runs, run_detail, trace, session, recovery, replay, setup])
page.run()
