"""The console's pages, one module each (Streamlit runs a page file top to bottom)."""
