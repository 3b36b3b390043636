"""Shared pytest settings.

Kernel tests need root and this machine's real kernel. Outside CI they skip when they cannot
run; in CI (`CI=true`, or ALAZ_REQUIRE_KERNEL=1) a kernel test that would skip fails instead,
so a missing server, tool or capability cannot pass for a green run.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_KERNEL = os.environ.get("ALAZ_REQUIRE_KERNEL") == "1" or os.environ.get("CI") == "true"


def need(condition: bool, reason: str) -> None:
    """Skip (or, in CI, fail) a kernel test when `condition` does not hold."""
    if condition:
        return
    if REQUIRE_KERNEL:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """In CI, a skipped kernel test is a failure: CI must provide what it needs."""
    if REQUIRE_KERNEL and report.skipped and "tests/kernel/" in report.nodeid:
        report.outcome = "failed"
        report.longrepr = f"kernel test skipped in CI: {report.longrepr}"
