"""A throwaway podman for the container tests (``-m container``): config, storage, base image.

Loaded as a pytest plugin (``pytest_plugins = ["container_env"]``) by tests/test_image.py and
tests/test_pod.py, so one session builds the base and the project image once for both. Every
machine-specific setting stays here, never in deploy/: the runc runtime (crun fails on hybrid
cgroups), ulimits within what root may set without CAP_SYS_RESOURCE, slirp4netns networking
(no bridge, no iptables rules on the host), and a base image made from Debian packages
(mmdebstrap) standing in for ``python:3.11-slim``, since no registry answers here. Config,
storage, run state and volumes all live in one directory that the session fixture removes, with
everything in it, also when a test fails. CONTAINER_CHECK=1 (.ci/run) turns a missing tool into
a failure instead of a skip.

    .venv-test/bin/python tests/container_env.py   # rewrite docs/scaling.md's container figures
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "artefacts" / "container.json"
DOC = ROOT / "docs" / "scaling.md"
BASE_TAG = "localhost/fillmask-test-base:bookworm"
IMAGE_TAG = "localhost/fillmask:test"
TOOLS = ("podman", "runc", "mmdebstrap", "slirp4netns")
# Made by podman on the host whatever its config says (runc's state, network namespaces, the
# image copier's blob cache): removed again when this session created them and they are empty.
HOST_PATHS = [
    "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/var/lib/containers/cache",
    "/var/lib/containers",
    "/run/containers/networks",
    "/run/containers",
    "/run/runc",
    "/run/netns",
]
# The host's CA bundle: pip in the build goes through this machine's TLS-intercepting proxy.
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
BASE_CHANGES = [
    "ENV=PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV=PIP_CERT=/usr/local/share/host-ca.crt",
    'CMD=["python3"]',
]


def prerequisites():
    """Why the container tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "container tests need root (rootful podman with a test-local storage)"
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        need = ", ".join(missing)
        return f"container tests need {need} (apt install podman runc mmdebstrap slirp4netns)"
    return None


def helper_processes():
    """(pid, name) of the processes podman leaves beside a container (conmon, slirp4netns)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue  # gone meanwhile
        if name in ("conmon", "slirp4netns", "catatonit"):
            found.add((int(pid), name))
    return found


class Podman:
    """podman with its config, storage and run state under ``root`` only."""

    def __init__(self, root):
        self.root = Path(root)
        self.before = {p for p in HOST_PATHS if os.path.lexists(p)}
        self.helpers_before = helper_processes()
        tmp = self.root / "tmp"
        for sub in ("store", "run", "tmp", "net"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            'netns = "slirp4netns"\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{tmp}/events.log"\n'
            f'tmp_dir = "{tmp}/libpod"\n'
            f'volume_path = "{self.root}/store/volumes"\n'
            "[network]\n"
            f'network_config_dir = "{self.root}/net"\n'
        )
        (self.root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.root}/store"\n'
            f'runroot = "{self.root}/run"\n'
        )
        (self.root / "registries.conf").write_text("unqualified-search-registries = []\n")
        self.env = dict(
            os.environ,
            CONTAINERS_CONF=str(self.root / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(self.root / "storage.conf"),
            CONTAINERS_REGISTRIES_CONF=str(self.root / "registries.conf"),
        )
        self.figures = {}

    def __call__(self, *args, timeout=120, check=True):
        """Run ``podman ARGS``; the CompletedProcess (text). ``check``: fail on non-zero."""
        command = ["podman", *map(str, args)]
        run = dict(env=self.env, capture_output=True, text=True, timeout=timeout)
        done = subprocess.run(command, **run)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)}: {done.stderr[-3000:]}")
        return done

    def build_base(self):
        """Debian bookworm's python3 with a venv on PATH (pip, as in python:3.11-slim)."""
        tar = self.root / "base.tar"
        hooks = [
            f"copy-in {HOST_CA} /usr/local/share",
            'mv "$1/usr/local/share/ca-certificates.crt" "$1/usr/local/share/host-ca.crt"',
            'chroot "$1" python3 -m venv /opt/venv',
        ]
        command = ["mmdebstrap", "--quiet", "--variant=minbase"]
        command += ["--include=python3,python3-venv,ca-certificates"]
        command += [f"--customize-hook={hook}" for hook in hooks] + ["bookworm", str(tar)]
        subprocess.run(command, check=True, capture_output=True, timeout=600)
        changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
        self("import", *changes, tar, BASE_TAG, timeout=300)
        tar.unlink()

    def build_image(self):
        """deploy/Dockerfile, context the repository root (its .dockerignore), on the base."""
        dockerfile = ROOT / "deploy" / "Dockerfile"
        # --network=host: pip reaches the package index; nothing else runs in the build.
        build = ["build", "--pull=never", "--network=host", "--build-arg", f"BASE={BASE_TAG}"]
        self(*build, "-f", dockerfile, "-t", IMAGE_TAG, ROOT, timeout=900)
        for key, tag in (("image_size_mb", IMAGE_TAG), ("base_size_mb", BASE_TAG)):
            size = int(self("image", "inspect", "--format", "{{.Size}}", tag).stdout)
            self.figures[key] = round(size / 1e6)

    def cleanup(self):
        """Remove every pod, container, volume and image, then the storage and host leftovers."""
        for args in (
            ("pod", "rm", "--all", "--force", "--time", "0"),
            ("rm", "--all", "--force", "--time", "0"),
            ("volume", "rm", "--all", "--force"),
            ("rmi", "--all", "--force"),
        ):
            self(*args, check=False)
        for point in self.mounts():  # overlay layers of a container that would not go
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        for path in HOST_PATHS:  # deepest first
            if path not in self.before and os.path.lexists(path):
                try:
                    os.unlink(path) if os.path.isfile(path) else os.rmdir(path)
                except OSError:
                    pass  # not empty: someone else uses it too; leave it
        assert not self.mounts(), f"mounts left behind: {self.mounts()}"
        from live import poll

        # conmon exits a moment after its container is removed: wait for it, with a deadline.
        left = lambda: helper_processes() - self.helpers_before  # noqa: E731
        poll(lambda: not left(), 10, lambda: f"podman's helpers left running: {left()}")
        assert not self.root.exists(), f"{self.root} left behind"

    def mounts(self):
        """Mount points under this podman's directory."""
        points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        return [p for p in points if p.startswith(str(self.root))]


@pytest.fixture(scope="session")
def podman(tmp_path_factory):
    """The session's podman, with the base and the project image built (removed afterwards)."""
    reason = prerequisites()
    if reason:
        if os.environ.get("CONTAINER_CHECK") == "1":
            pytest.fail(f"CONTAINER_CHECK=1 but {reason}")
        pytest.skip(reason)
    engine = Podman(tmp_path_factory.mktemp("podman"))
    try:
        started = time.monotonic()
        engine.build_base()
        engine.figures["base_build_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        engine.build_image()
        engine.figures["image_build_s"] = round(time.monotonic() - started, 1)
        yield engine
    finally:
        engine.cleanup()


def record(figures):
    """Merge ``figures`` into artefacts/container.json."""
    REPORT.parent.mkdir(exist_ok=True)
    old = json.loads(REPORT.read_text()) if REPORT.is_file() else {}
    REPORT.write_text(json.dumps({**old, **figures}, indent=2, ensure_ascii=False) + "\n")


def markdown(figures):
    """The container block of docs/scaling.md, from one run's figures (the JSON rides along)."""
    f = figures
    return "\n".join(
        [
            "| image | size | build | start to ready | SIGTERM to exit (idle) |",
            "|---|---|---|---|---|",
            f"| deploy/Dockerfile on the local Debian base ({f['base_size_mb']} MB) "
            f"| {f['image_size_mb']} MB ({f['image_size_mb'] - f['base_size_mb']} MB over the "
            f"base: on python:3.11-slim, its size plus that) | {f['image_build_s']} s (the "
            f"base: {f['base_build_s']} s) "
            f"| {f['start_to_ready_s']} s (WORKERS={f['workers']}) | {f['stop_s']} s |",
            "",
            f"*From `artefacts/container.json` of {f['recorded_at']} (`python -m pytest "
            "tests/test_image.py -m container`, root, podman with runc), written here by "
            "`python tests/container_env.py`. Start to ready: from `podman run` to the first "
            "200 of `/v2/health/ready`. Tiny random test model (tests/conftest.py), so "
            "the start time is the server's and the image's, not bert-base-chinese's load. "
            f"On {f['machine']}, 1-minute load average {f['load_1min']} at the end of the run.*",
            f"<!-- container-figures: {json.dumps(f, sort_keys=True)} -->",
        ]
    )


def main():
    """Rewrite the container block of docs/scaling.md from artefacts/container.json."""
    sys.path.insert(0, str(ROOT))
    from fillmask.bench.scaling import replace_block

    figures = json.loads(REPORT.read_text(encoding="utf-8"))
    DOC.write_text(replace_block(DOC.read_text(), "container", markdown(figures)))
    print(f"{DOC.relative_to(ROOT)}: container figures of {figures['recorded_at']}")


if __name__ == "__main__":
    main()
