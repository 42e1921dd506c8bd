"""The console's router: ``streamlit run streamlit_app.py``.

A link with ``?run=ID`` (the one in pause notifications) opens that run's detail page.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "app_pages"

st.set_page_config(page_title="Omium console", page_icon=":material/shield:", layout="wide")

monitoring = st.Page(
    PAGES / "monitoring.py",
    title="Monitoring",
    icon=":material/monitoring:",
    url_path="monitoring",
    default=True,
)
runs = st.Page(PAGES / "runs.py", title="Runs", icon=":material/list_alt:", url_path="runs")
run_detail = st.Page(PAGES / "run_detail.py", title="Run detail", icon=":material/search:", url_path="run")
recovery = st.Page(
    PAGES / "recovery.py", title="Recovery queue", icon=":material/build:", url_path="recovery"
)
replay = st.Page(PAGES / "replay.py", title="Replay", icon=":material/replay:", url_path="replay")
setup = st.Page(PAGES / "setup.py", title="Setup", icon=":material/settings:", url_path="setup")

page = st.navigation([monitoring, runs, run_detail, recovery, replay, setup])
if "run" in st.query_params and page is monitoring:
    st.switch_page(run_detail)  # a notification's link: ?run=ID
page.run()
