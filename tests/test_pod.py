"""deploy/k8s's Deployment run for real by ``podman kube play`` (``-m container``).

The manifest is read and patched here, never copied: one replica, the image the session built,
a test-local hostPath holding the exported model, and the container port published on
127.0.0.1 only (hostPort + hostIP). Inside the running pod the test checks what the pod
template asks for: the user and group, no privilege escalation, no capabilities, the seccomp
filter, the memory limit in the container's cgroup, the environment, the read-only root and
model mount; and the pod answers /predict with PyTorch's words. Probes, preStop, the Service, the
HPA and the PDB need a cluster: podman runs none of them (docs/scaling.md says what this proves).
"""

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import requests
import yaml

pytest.register_assert_rewrite("container_env")  # also a plugin: its fixture is the session's
from container_env import IMAGE_TAG  # noqa: E402
from live import answers_ready, free_port, poll  # noqa: E402
from reference import assert_top_k, mask_log_probs, offerable  # noqa: E402

pytest_plugins = ["container_env"]
pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENT = ROOT / "deploy" / "k8s" / "deployment.yaml"
TEXT = "今天天气真[MASK]啊"
# Run in the container: what the kernel says about its first process (Gunicorn's master).
INSIDE = r"""
import json, os
status = dict(l.split(":", 1) for l in open("/proc/1/status") if ":" in l)
status = {k: v.split() for k, v in status.items()}
env = dict(e.split("=", 1) for e in open("/proc/1/environ").read().split("\0") if "=" in e)
limits = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
memory = [open(p).read().strip() for p in limits if os.path.exists(p)]
mounts = {l.split()[1]: l.split()[3].split(",") for l in open("/proc/mounts")}
written = {}
for path in ("/app/probe", "/models/probe", "/tmp/probe"):
    try:
        open(path, "w").close()
        written[path] = "ok"
    except OSError as exc:
        written[path] = exc.strerror
cmdlines = [open(f"/proc/{p}/cmdline").read() for p in os.listdir("/proc") if p.isdigit()]
gunicorns = sum("app:app" in c.split("\0") for c in cmdlines)  # master + workers
print(json.dumps(dict(status=status, env=env, memory=memory, mounts=mounts, written=written,
                      gunicorns=gunicorns)))
"""


def mebibytes(quantity):
    value, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(value) * (1024 if unit == "Gi" else 1)


def patched(deployment, models_dir, port):
    """The Deployment as played here: the only changes the test makes to the shipped file."""
    dep = copy.deepcopy(deployment)
    dep["spec"]["replicas"] = 1
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    container["image"] = IMAGE_TAG
    (http,) = container["ports"]
    http.update(hostPort=port, hostIP="127.0.0.1")
    (models,) = [v for v in pod["volumes"] if v["name"] == "models"]
    models["hostPath"]["path"] = str(models_dir)
    return dep


@pytest.fixture
def pod(podman, tiny_model_dir, tmp_path):
    """The played pod: (its app container's name, URL, the patched manifest); removed after."""
    shipped = yaml.safe_load(DEPLOYMENT.read_text())
    (main,) = shipped["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in main["env"]}
    (mount,) = [m for m in main["volumeMounts"] if m["name"] == "models"]
    # The exported directory, copied with its modes, where MODEL_DIR points under the mount.
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models / Path(env["MODEL_DIR"]).relative_to(mount["mountPath"]))
    port = free_port()
    dep = patched(shipped, models, port)
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(dep, sort_keys=False))
    try:
        podman("kube", "play", "--network", "slirp4netns", manifest, timeout=300)
        names = podman("ps", "--format", "{{.Names}} {{.IsInfra}}").stdout.split("\n")
        (name,) = [n.split()[0] for n in names if n.endswith(" false")]
        yield name, f"http://127.0.0.1:{port}", dep
    finally:
        podman("kube", "down", manifest, check=False, timeout=120)
        podman("pod", "rm", "--all", "--force", "--time", "0", check=False)
        podman("volume", "prune", "--force", check=False)
    assert not podman("ps", "--all", "--quiet").stdout.strip(), "containers left behind"
    assert not podman("volume", "ls", "--quiet").stdout.strip(), "volumes left behind"


def wait_ready(podman, name, url, timeout=120):
    """Poll the readiness path until 200 (podman runs no probes itself)."""
    poll(
        lambda: answers_ready(url),
        timeout,
        lambda: "pod not ready:\n" + podman("logs", name, check=False).stderr,
        interval=0.1,
    )


def test_only_image_replicas_hostpath_and_loopback_port_are_changed(tmp_path):
    shipped = yaml.safe_load(DEPLOYMENT.read_text())
    dep = patched(shipped, tmp_path, 5555)
    assert dep != shipped
    pod, (main,) = dep["spec"]["template"]["spec"], dep["spec"]["template"]["spec"]["containers"]
    # Undo exactly the documented changes: what is left is the shipped file.
    dep["spec"]["replicas"] = shipped["spec"]["replicas"]
    main["image"] = shipped["spec"]["template"]["spec"]["containers"][0]["image"]
    del main["ports"][0]["hostPort"], main["ports"][0]["hostIP"]
    pod["volumes"][0]["hostPath"]["path"] = "/opt/fillmask/models"
    assert dep == shipped


def test_pod_template_holds_inside_the_running_pod(pod, podman, tiny_torch, tiny_tokenizer):
    name, url, dep = pod
    wait_ready(podman, name, url)
    spec = dep["spec"]["template"]["spec"]
    (main,) = spec["containers"]
    facts = json.loads(podman("exec", name, "python3", "-c", INSIDE).stdout)
    status = facts["status"]
    # runAsUser / runAsGroup (and so runAsNonRoot): real, effective, saved and fs ids.
    assert status["Uid"] == [str(spec["securityContext"]["runAsUser"])] * 4
    assert status["Gid"] == [str(spec["securityContext"]["runAsGroup"])] * 4
    assert spec["securityContext"]["runAsNonRoot"] and status["Uid"][0] != "0"
    # allowPrivilegeEscalation: false is the no_new_privs bit; drop [ALL] empties every set.
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert status["NoNewPrivs"] == ["1"]
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[caps][0], 16) == 0, (caps, status[caps])
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert status["Seccomp"] == ["2"]  # a filter is in force
    # limits.memory as the container's cgroup limit (v2 memory.max or v1 limit_in_bytes).
    limit = mebibytes(main["resources"]["limits"]["memory"]) * 2**20
    assert facts["memory"] == [str(limit)]
    # The env, as the server's process sees it, and WORKERS taking effect.
    for item in main["env"]:
        assert facts["env"][item["name"]] == item["value"], item
    assert facts["gunicorns"] == 1 + int(facts["env"]["WORKERS"])
    # readOnlyRootFilesystem, the read-only model mount, a writable /tmp.
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert "ro" in facts["mounts"]["/"] and "ro" in facts["mounts"]["/models"]
    assert facts["written"] == {
        "/app/probe": "Read-only file system",
        "/models/probe": "Read-only file system",
        "/tmp/probe": "ok",
    }
    # And it answers, with PyTorch's words.
    r = requests.post(url + "/predict", json={"text": TEXT, "top_k": 5}, timeout=30)
    assert r.status_code == 200, r.text
    (mask,) = r.json()["masks"]
    row = mask_log_probs(tiny_torch, tiny_tokenizer, TEXT)[0]
    got = [(c["token_id"], c["score"]) for c in mask["candidates"]]
    assert_top_k(got, row, offerable(tiny_tokenizer), 5)
