"""requirements.lock pins what every machine runs: each dependency of pyproject.toml, with
hashes, at a version its minimum admits, and it is what this environment has installed."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked() -> dict[str, tuple[Version, bool]]:
    """name → (pinned version, whether its marker holds here)."""
    pins: dict[str, tuple[Version, bool]] = {}
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    for number, line in enumerate(lines):
        match = _PIN.match(line)
        if not match:
            continue
        name, version, marker = match.groups()
        assert lines[number + 1].strip().startswith("--hash=sha256:"), f"{name} has no hash"
        applies = Marker(marker).evaluate() if marker else True
        pins[canonicalize_name(name)] = (Version(version), applies)
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [
        Requirement(text)
        for text in project["dependencies"] + project["optional-dependencies"]["dev"]
    ]


@pytest.mark.parametrize("requirement", declared(), ids=str)
def test_every_declared_dependency_is_pinned_within_its_range(requirement: Requirement) -> None:
    pins = locked()
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{name} is not in requirements.lock: run make lock"
    version, _ = pins[name]
    assert requirement.specifier.contains(version, prereleases=True), (
        f"requirements.lock pins {name} {version}, outside {requirement.specifier}: run make lock"
    )


def test_the_sandboxed_template_engine_has_its_escapes_fixed() -> None:
    jinja = next(r for r in declared() if canonicalize_name(r.name) == "jinja2")
    assert not jinja.specifier.contains("3.1.5"), "jinja2 < 3.1.6 has known sandbox escapes"


def test_this_environment_runs_what_the_lock_pins() -> None:
    mismatched = []
    for name, (version, applies) in locked().items():
        if not applies:
            continue
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            mismatched.append(f"{name} missing")
            continue
        if installed != version:
            mismatched.append(f"{name} {installed} (lock: {version})")
    assert not mismatched, "installed packages differ from requirements.lock: " + ", ".join(
        mismatched
    )
