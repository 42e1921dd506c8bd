"""The README's SDK example runs as written, and a second run answers from the record."""

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
