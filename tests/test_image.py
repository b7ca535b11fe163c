"""The image of deploy/Dockerfile, built and run as users run it (podman; ``-m container``).

Run as docs/scaling.md says: read-only root (only ``--tmpfs /tmp`` writable; podman's own extra
tmpfs mounts are turned off, as Docker has none), the image's non-root user, the model directory
exported by export_onnx.py mounted read-only, the port published on loopback only. It must
answer /predict, /fill-mask and v2 with PyTorch's words, refuse a missing model in one line, and
drain on SIGTERM. Its size and start-to-ready time go to artefacts/container.json
(docs/scaling.md shows them: ``python tests/container_env.py``).
"""

import datetime
import json
import os
import platform
import socket
import time
import uuid

import numpy as np
import pytest
import requests

pytest.register_assert_rewrite("container_env")  # also a plugin: its fixture is the session's
from container_env import IMAGE_TAG, record  # noqa: E402
from live import answers_ready, free_port, poll  # noqa: E402
from reference import assert_top_k, mask_log_probs, offerable  # noqa: E402

pytest_plugins = ["container_env"]
pytestmark = pytest.mark.container

MOUNT = "/models/bert-base-chinese"  # the image's MODEL_DIR
TEXT = "今天天气真[MASK]啊"


class Container:
    """``podman run -d`` of the project image as documented; removed on exit, whatever happens."""

    def __init__(self, podman, model_dir=None, **env):
        self.podman, self.name, self.port = podman, f"fillmask-{uuid.uuid4().hex[:8]}", free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        mount = ["-v", f"{model_dir}:{MOUNT}:ro"] if model_dir else []
        env_args = [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]
        self.args = [
            *("run", "--pull=never", "--name", self.name, "--read-only"),
            *("--read-only-tmpfs=false", "--tmpfs", "/tmp", "-p", f"127.0.0.1:{self.port}:5000"),
            *mount,
            *env_args,
        ]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.podman("rm", "--force", "--time", "0", self.name, check=False)

    def start(self, timeout=120):
        """Start detached and wait for /v2/health/ready; seconds from ``run`` to ready."""
        started = time.monotonic()
        self.podman(*self.args, "-d", IMAGE_TAG)

        def ready():
            if self.state() != "running":
                raise AssertionError(f"container {self.state()}:\n{self.logs()}")
            return answers_ready(self.url)

        poll(ready, timeout, lambda: "not ready:\n" + self.logs())
        return time.monotonic() - started

    def state(self):
        return self.podman("inspect", "--format", "{{.State.Status}}", self.name).stdout.strip()

    def logs(self):
        done = self.podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def exec(self, *command):
        return self.podman("exec", self.name, *command, check=False)

    def post(self, path, body):
        r = requests.post(self.url + path, json=body, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def allowed(tiny_tokenizer):
    return offerable(tiny_tokenizer)


def model_name(model_dir):
    return json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))["model_name"]


def test_serves_pytorchs_words_read_only_as_its_user(
    podman, tiny_model_dir, tiny_torch, tiny_tokenizer, allowed
):
    with Container(podman, tiny_model_dir) as box:
        ready_s = box.start()
        facts = json.loads(podman("inspect", box.name).stdout)[0]
        assert facts["Config"]["User"] == "10001:10001" and facts["HostConfig"]["ReadonlyRootfs"]
        assert [m["RW"] for m in facts["Mounts"] if m["Destination"] == MOUNT] == [False]
        (binding,) = facts["HostConfig"]["PortBindings"]["5000/tcp"]
        assert binding == {"HostIp": "127.0.0.1", "HostPort": str(box.port)}
        assert box.exec("id", "-u").stdout.strip() == box.exec("id", "-g").stdout.strip() == "10001"
        for path in ("/app/x", f"{MOUNT}/x"):
            assert "Read-only file system" in box.exec("touch", path).stderr, path
        assert box.exec("touch", "/tmp/x").returncode == 0

        row = mask_log_probs(tiny_torch, tiny_tokenizer, TEXT)[0]
        predict = box.post("/predict", {"text": TEXT, "top_k": 5})
        (mask,) = predict["masks"]
        assert_top_k([(c["token_id"], c["score"]) for c in mask["candidates"]], row, allowed, 5)
        assert all(c["sequence"] == TEXT.replace("[MASK]", c["word"]) for c in mask["candidates"])

        hf = box.post("/fill-mask", {"inputs": TEXT, "parameters": {"top_k": 3}})
        assert_top_k([(c["token"], c["score"]) for c in hf], row, allowed, 3)

        texts = [TEXT, "[MASK]前明月光，疑是地上[MASK]。"]
        body = {
            "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}],
            "parameters": {"top_k": 3},
        }
        v2 = box.post(f"/v2/models/{model_name(tiny_model_dir)}/infer", body)
        out = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in v2["outputs"]}
        for t, text in enumerate(texts):
            for m, want in enumerate(mask_log_probs(tiny_torch, tiny_tokenizer, text)):
                ids, scores = out["token_ids"][t, m].tolist(), out["scores"][t, m].tolist()
                assert_top_k(list(zip(ids, scores, strict=True)), want, allowed, 3)
        logs = box.logs()
        stopped = time.monotonic()
        podman("stop", "--time", "30", box.name)
        stop_s = time.monotonic() - stopped
        assert podman("inspect", "--format", "{{.State.ExitCode}}", box.name).stdout.strip() == "0"
        # Nothing goes wrong on a read-only root either (e.g. Gunicorn's control socket in $HOME).
        assert "Traceback" not in logs and "[ERROR]" not in logs, logs
    version = podman("version", "--format", "{{.Client.Version}}").stdout.strip()
    record(
        {
            **podman.figures,
            "start_to_ready_s": round(ready_s, 2),
            "stop_s": round(stop_s, 2),
            "workers": 2,  # the image's default (gunicorn.conf.py)
            "recorded_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": f"{os.cpu_count()}-core {platform.machine()} Linux, podman {version}",
            "load_1min": round(os.getloadavg()[0], 1),  # a shared machine's timings vary with it
        }
    )
    print(f"\ncontainer: image {podman.figures['image_size_mb']} MB, ready in {ready_s:.2f} s")


def test_missing_model_mount_is_refused_in_one_line(podman):
    with Container(podman) as box:
        done = podman(*box.args, IMAGE_TAG, check=False, timeout=120)
        output = done.stdout + done.stderr
        assert done.returncode != 0, output
        refusals = [line for line in output.splitlines() if "cannot start: " in line]
        assert len(refusals) == 1 and MOUNT in refusals[0], output
        assert "Traceback" not in output and "Booting worker" not in output, output


class SlowRequest:
    """A /predict whose body is held back: in flight in a worker thread until ``finish``."""

    def __init__(self, port, text):
        self.body = json.dumps({"text": text}, ensure_ascii=False).encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(self.body)}\r\n".encode()
            + b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
            + self.body[:5]
        )
        # Gunicorn answers "100 Continue" from the worker thread that took the request up.
        assert self.sock.recv(64).startswith(b"HTTP/1.1 100 Continue")

    def finish(self):
        """Send the rest of the body; (status, JSON body)."""
        self.sock.sendall(self.body[5:])
        raw = b""
        while chunk := self.sock.recv(65536):
            raw += chunk
        self.sock.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(payload)


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(
    podman, tiny_model_dir, tiny_torch, tiny_tokenizer, allowed
):
    with Container(podman, tiny_model_dir, WORKERS=1) as box:
        box.start()
        slow = SlowRequest(box.port, TEXT)
        podman("kill", "--signal", "TERM", box.name)  # what podman/docker stop and kubelet send
        # The worker has the signal while the request is still open.
        poll(lambda: "draining" in box.logs(), 30, box.logs)
        status, body = slow.finish()
        assert status == 200 and body["success"] is True, body
        row = mask_log_probs(tiny_torch, tiny_tokenizer, TEXT)[0]
        (mask,) = body["masks"]
        assert_top_k([(c["token_id"], c["score"]) for c in mask["candidates"]], row, allowed, 5)
        assert podman("wait", box.name, timeout=60).stdout.strip() == "0", box.logs()
        assert "Traceback" not in box.logs()
