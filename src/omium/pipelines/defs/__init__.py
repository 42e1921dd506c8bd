"""The Dagster definitions of Omium's code location: resources, assets, checks, schedules, sensors."""
