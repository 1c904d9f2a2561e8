"""``stilts taplint`` (Debian's stilts) against the served cluster: 0 errors.

taplint checks what no test of ours would think of (VOSI schemas, TAP_SCHEMA against
/tables, UWS behaviour, the examples through an ADQL validator, result columns against
the declared metadata). Skipped where stilts is not installed (CI installs it: .ci/run).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.api.conftest import Served

#: only guards against a hung JVM: taplint takes ~40 s here
PATIENCE_S = 600


@pytest.mark.skipif(shutil.which("stilts") is None, reason="stilts (taplint) is not installed")
def test_taplint_reports_no_errors(served: Served) -> None:
    run = subprocess.run(
        ["stilts", "taplint", f"tapurl={served.url}/tap", "report=EW", "maxrepeat=3"],
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
        stdin=subprocess.DEVNULL,
    )
    output = run.stdout + run.stderr
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+)", output)
    assert totals is not None, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("E-")]
    assert int(totals.group(1)) == 0, "\n".join(errors)
