import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff():
    exe = Path(sys.executable).with_name("ruff")
    return str(exe) if exe.exists() else shutil.which("ruff")


@pytest.mark.skipif(_ruff() is None, reason="ruff not installed (it is in the [dev] extra)")
def test_ruff_clean():
    p = subprocess.run([_ruff(), "check", "numstab", "tests", "benchmarks"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
