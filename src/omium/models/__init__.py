"""Failure models (scikit-learn), pure Python: nothing here imports the rest of Omium."""
