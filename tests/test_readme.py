"""The README's SDK example runs as written (a second run answers from the record); CI runs its test command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.integration
def test_readme_sdk_example(tmp_path: Path) -> None:
    code = re.search(r"## Durable agent runs.*?```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    script = tmp_path / "example.py"
    script.write_text(code.group(1))
    env = os.environ | {"OMIUM_HOME": str(tmp_path / "home"), "OMIUM_SERVER_URL": "http://127.0.0.1:9"}
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "offer for Jane Smith at score 720"
    # The runs are in the control database, and at a normal exit every fact was shipped to the
    # warehouse (nothing waits in the outbox).
    import sqlite3

    with sqlite3.connect(tmp_path / "home" / "control.db") as db:
        assert db.execute("SELECT count(*) FROM runs WHERE run_id = 'onboarding-jane'").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM outbox").fetchone() == (0,)


def test_ci_runs_the_readme_test_command() -> None:
    section = README.read_text().split("Run the tests:", 1)[1]
    command = section.split("```bash\n", 1)[1].split("\n```", 1)[0].strip()
    assert "pytest" in command and ".venv-crewai" in command
    assert command in (README.parent / ".ci" / "run").read_text().splitlines()
