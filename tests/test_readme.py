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
    # At a normal exit everything journaled was moved into the warehouse.
    assert all(path.stat().st_size == 0 for path in (tmp_path / "home" / "journal").glob("*.jsonl"))


def test_ci_runs_the_readme_test_command() -> None:
    section = README.read_text().split("Run the tests:", 1)[1]
    command = section.split("```bash\n", 1)[1].split("\n```", 1)[0].strip()
    assert "pytest" in command and ".venv-crewai" in command
    assert command in (README.parent / ".ci" / "run").read_text().splitlines()
