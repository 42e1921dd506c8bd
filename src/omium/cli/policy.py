"""``omium policy check FILE`` and ``omium policy schema``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(
    help="Recovery policies: validate them, and the JSON Schema for editors.", no_args_is_help=True
)


@app.command("check")
def check(files: list[Path] = typer.Argument(..., help="Policy YAML files.")) -> None:
    """Validate policy files; errors name the file, line and key, and say what is allowed."""
    from omium.recovery.policy import Policy

    for path in files:
        policy = Policy.load(path)
        triggers = ", ".join(k for k, v in policy.triggers.items() if v) or "none"
        retry = policy.retry
        typer.echo(
            f"{path}: ok — triggers: {triggers}; retries: {retry.max_retries} "
            f"({'exponential' if retry.exponential else 'fixed'} {retry.initial:g}s..{retry.maximum:g}s, "
            f"{retry.condition}); edits allowed: {', '.join(policy.allowed_edits) or 'none'}"
        )


@app.command("schema")
def schema(output: Path = typer.Option(None, "--output", "-o", help="Write here instead of stdout.")) -> None:
    """Print the policy JSON Schema (point your editor's YAML support at it)."""
    from omium.recovery.policy import SCHEMA

    text = json.dumps(SCHEMA, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}")
