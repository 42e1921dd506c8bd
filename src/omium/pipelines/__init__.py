"""Dagster pipelines: dependency graphs, failure features, labels, models, predictions, root causes."""
