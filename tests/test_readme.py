"""Runs exactly the engine example of README.md (between the engine-example markers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_engine_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = README.read_text(encoding="utf-8")
    region = text.split("<!-- engine-example:start -->", 1)[1]
    region = region.split("<!-- engine-example:end -->", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", region, flags=re.DOTALL)
    exec(compile(block, str(README), "exec"), {"__name__": "readme_engine_example"})
    printed = capsys.readouterr().out
    assert "task_id='171'" in printed, printed
    assert "EndReason.ASSIGNED" in printed, printed
