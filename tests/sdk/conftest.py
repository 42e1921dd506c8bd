"""Fixtures of the SDK's tests: the session's PostgreSQL (``postgres_server``, ``postgres_url``)
is in tests/conftest.py, shared with the warehouse's and the collector's tests."""
