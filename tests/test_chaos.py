"""make chaos, short: Redis killed and back with its data, a worker SIGKILLed and PostgreSQL
restarted under a mixed load through nginx lose no acknowledged write, double none, serve no
stale read and no 5xx outside the PostgreSQL outage."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack

CHAOS = Path(__file__).with_name("chaos.py")


def test_a_short_chaos_run_passes_every_check():
    result = subprocess.run([sys.executable, str(CHAOS), "--short"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "OK: every check passed" in result.stdout
