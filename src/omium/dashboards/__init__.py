"""Dashboards: the on-call console (Streamlit) and Grafana dashboards."""
