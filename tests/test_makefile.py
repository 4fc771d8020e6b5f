"""``make install`` (behind ``make train``/``make test``): one line of output, pip's in a log file,
and an environment of the checkout's own that leaves other installs of dsc alone."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)  # the machine's, outside any venv
# Run as a user would, not as a sub-make of `make test` (which would announce its directories).
ENV = {name: value for name, value in os.environ.items() if name not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def where_dsc_imports_from(python: str, cwd: Path) -> str:
    code = "import importlib.util; spec = importlib.util.find_spec('dsc'); print(spec and spec.origin)"
    return subprocess.run([python, "-c", code], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_make_install_is_quiet_and_leaves_other_installs_alone(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("Makefile", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, checkout / name)
    shutil.copytree(ROOT / "dsc", checkout / "dsc", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    before = where_dsc_imports_from(BASE_PYTHON, tmp_path)
    result = subprocess.run(
        ["make", "--no-print-directory", "install", f"PYTHON={BASE_PYTHON}"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["installing dsc into .venv/ (once; pip's output in install.log) …"]
    assert "Successfully installed" in (checkout / "install.log").read_text()
    assert where_dsc_imports_from(str(checkout / ".venv" / "bin" / "python"), tmp_path).startswith(
        str(checkout)
    )
    assert where_dsc_imports_from(BASE_PYTHON, tmp_path) == before
    again = subprocess.run(
        ["make", "--no-print-directory", "install", f"PYTHON={BASE_PYTHON}"],
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    assert "installing" not in again.stdout


def test_a_failed_install_shows_pips_output(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(ROOT / "Makefile", checkout / "Makefile")
    (checkout / "pyproject.toml").write_text("this is not TOML [")
    result = subprocess.run(
        ["make", "--no-print-directory", "install", "VENV=", f"PYTHON={sys.executable}"],
        cwd=checkout,
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert result.returncode != 0
    assert "installing dsc failed; pip's output above is in install.log" in result.stdout
    assert (checkout / "install.log").read_text().strip() and not (checkout / ".installed.stamp").exists()
