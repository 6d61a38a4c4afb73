"""Adding a vendor is one folder plus one registry line, shown by doing it.

A copy of the project gets a fourth vendor, `acme`: a folder made from an existing vendor's
(its declaration, kit, simulator and fixtures, renamed) and one line in `VENDOR_FOLDERS`.
The registry-driven suites then run in that copy, unchanged, and must cover `acme`: the
vendor contract, the client's transport faults, the ingress (every event type accepted
once), the fuzzed ingress, the worker pipeline (every event becomes an enriched record) and
sandbox mode (`callhook up` then `send-test-event` for every source).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: the vendor folder the new one is made from, and the new vendor's name
TEMPLATE, NEW = "diga", "acme"
#: each suite that iterates the registry, and the least number of its tests that must
#: run for the new vendor in the copy
SUITES = {
    "tests/vendors/test_contract.py": 10,
    "tests/vendors/test_client_faults.py": 3,
    "tests/service/test_webhooks.py": 1,
    "tests/fuzz/test_ingress_fuzz.py": 1,
    "tests/workers/test_pipeline.py": 1,
}
SANDBOX_TEST = "tests/test_up.py::test_up_then_send_test_event_for_each_vendor[next-port-free]"


def copy_project(into: Path) -> None:
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc", "var", ".pytest_cache")
    for folder in ("callhook", "service", "workers", "tests", "bench"):
        shutil.copytree(ROOT / folder, into / folder, ignore=ignored)
    shutil.copy2(ROOT / "pyproject.toml", into / "pyproject.toml")


def add_vendor_folder(project: Path) -> None:
    """`callhook/vendors/acme/`, made from the template vendor's folder: its files as they
    are, with the vendor's name renamed wherever the code spells it in lower case."""
    vendors = project / "callhook" / "vendors"
    shutil.copytree(vendors / TEMPLATE, vendors / NEW)
    for path in (vendors / NEW).rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        # the package path, the vendor's name and the name its errors give its API
        path.write_text(text.replace(TEMPLATE, NEW), encoding="utf-8")


def register(project: Path) -> None:
    """The one registry line."""
    registry = project / "callhook" / "vendors" / "__init__.py"
    text = registry.read_text(encoding="utf-8")
    line = f'    "{TEMPLATE}",\n'
    assert text.count(line) == 1
    registry.write_text(text.replace(line, line + f'    "{NEW}",\n'), encoding="utf-8")


@pytest.mark.timeout(900)
def test_a_fourth_vendor_is_one_folder_and_one_registry_line(tmp_path: Path) -> None:
    project = tmp_path / "project"
    copy_project(project)
    add_vendor_folder(project)
    register(project)

    report = tmp_path / "junit.xml"
    selected = [*SUITES, SANDBOX_TEST]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "not chaos",
            "-k",
            f"{NEW} or test_up_then_send_test_event_for_each_vendor",
            f"--junitxml={report}",
            *selected,
        ],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]

    passed: Counter[str] = Counter()
    for case in ET.parse(report).iter("testcase"):  # noqa: S314 (our own pytest report)
        if case.find("failure") is None and case.find("skipped") is None:
            module = case.get("classname", "").rsplit(".", 1)[-1]
            if NEW in case.get("name", "") or module == "test_up":
                passed[module] += 1
    for suite, least in SUITES.items():
        module = Path(suite).stem
        assert passed[module] >= least, f"{suite}: {passed[module]} tests ran for {NEW}"
    assert passed["test_up"] >= 1, "sandbox mode did not run"


def test_the_copy_would_import_the_new_vendor(tmp_path: Path) -> None:
    """The registry line is what makes the vendor known: before it, the copy has three."""
    project = tmp_path / "project"
    copy_project(project)
    add_vendor_folder(project)
    probe = "from callhook.vendors import VENDORS; print(','.join(VENDORS))"
    env = {**os.environ, "PYTHONPATH": str(project)}
    before = subprocess.run(
        [sys.executable, "-c", probe], cwd=project, env=env, capture_output=True, text=True
    )
    register(project)
    after = subprocess.run(
        [sys.executable, "-c", probe], cwd=project, env=env, capture_output=True, text=True
    )
    assert NEW not in before.stdout.strip().split(","), before.stderr
    assert NEW in after.stdout.strip().split(","), after.stderr
