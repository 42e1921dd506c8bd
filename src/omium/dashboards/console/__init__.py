"""The on-call console: ``streamlit run streamlit_app.py`` (``omium console`` does it).

Pages only render; SQL lives in :mod:`omium.warehouse.console_queries` and the data module caches
it; actions go through the Omium server's control API, so they are authorised and audited.
"""
