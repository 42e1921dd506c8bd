"""The ``omium`` command. Subcommands import their heavy parts lazily."""
