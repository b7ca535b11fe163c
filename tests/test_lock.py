"""constraints.txt pins every requirement inside its range (else: run scripts/lock.sh)."""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
FILES = ["requirements.txt", "requirements-export.txt", "requirements-dev.txt"]


def _lines(name):
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            yield line


def _locked():
    pins = {}
    for line in _lines("constraints.txt"):
        name, _, version = line.partition("==")
        assert version, f"constraints.txt: {line!r} is not an exact pin"
        pins[canonicalize_name(name)] = Version(version)
    return pins


REQUIREMENTS = [(name, Requirement(line)) for name in FILES for line in _lines(name)]


@pytest.mark.parametrize(("source", "req"), REQUIREMENTS, ids=[str(r) for _, r in REQUIREMENTS])
def test_requirement_is_bounded_and_locked_inside_its_range(source, req):
    upper = [s for s in req.specifier if s.operator in ("<", "<=", "==", "~=")]
    assert upper, f"{source}: {req} has no upper bound"
    locked = _locked().get(canonicalize_name(req.name))
    assert locked is not None, f"{req.name} is not in constraints.txt: run scripts/lock.sh"
    assert req.specifier.contains(locked, prereleases=True), (
        f"constraints.txt has {req.name}=={locked}, outside {source}'s {req.specifier}: "
        "run scripts/lock.sh"
    )


def test_lock_has_no_cuda_build():
    names = set(_locked())
    assert not {n for n in names if re.match(r"nvidia-|triton$", n)}
    assert "+" not in (ROOT / "constraints.txt").read_text().split("torch==", 1)[1].split()[0]
