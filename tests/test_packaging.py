"""The built wheel installs and imports as ``queuetasks.engine`` / ``queuetasks.web`` in a fresh
venv, away from the source tree, with its type marker and static files."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import importlib.metadata as md, importlib.resources as res, sys
import queuetasks.engine as engine, queuetasks.web as web, queuetasks.web.cli as cli
for mod in (engine, web):
    assert sys.prefix in mod.__file__, (mod.__file__, sys.prefix)
assert res.files("queuetasks.engine").joinpath("py.typed").is_file()
assert res.files("queuetasks.web").joinpath("static", "console.html").is_file()
assert engine.Engine and web.QueueTasks
(script,) = [e for e in md.entry_points(group="console_scripts") if e.name == "queuetasks"]
assert script.load() is cli.main
print("ok", engine.__file__)
"""


@pytest.mark.timeout(300)
def test_wheel_imports_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("queuetasks_trio-*.whl")

    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    site = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    # Install the wheel with this interpreter's pip into the fresh venv only, then let the fresh
    # venv see the already installed dependencies (not the source tree, not the editable finder:
    # a path line in a .pth file is added to sys.path without running its own .pth files).
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(site), str(wheel)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    run = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok ")
