"""deploy/k8s: strict Kubernetes schemas, one set of labels, probes and drain, KServe's shape.

There is no cluster here (tests/test_pod.py runs the Deployment's pod under ``podman kube play``,
which enforces the pod template but runs no probes, hooks, Service, HPA or PDB):
``kubernetes-validate --strict`` checks every manifest against the Kubernetes API's own schemas,
and these tests check what a schema cannot (that the Service, PodDisruptionBudget and HPA find
the Deployment's pods, that probes hit real endpoints, that the memory request covers bench.py's
measured peak). KServe's resources are custom resources, so they are checked against
tests/kserve_schema.json, written from KServe's API types.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import make_config

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KSERVE = K8S / "kserve-inferenceservice.yaml"
# The oldest Kubernetes these manifests target (k3s releases follow it) and the newest bundled.
VERSIONS = ["1.30.0", "1.37.0"]


def load(name):
    return yaml.safe_load((K8S / name).read_text())


def resources():
    return load("kustomization.yaml")["resources"]


def deployment():
    return load("deployment.yaml")


def container():
    (only,) = deployment()["spec"]["template"]["spec"]["containers"]
    return only


def env(of_container):
    return {e["name"]: e["value"] for e in of_container.get("env", [])}


def validate_cli(paths, version):
    """kubernetes-validate's command line, strict, on ``paths``."""
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version]
    return subprocess.run([*command, *map(str, paths)], capture_output=True, text=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_kustomization_resource_passes_strict_validation(version):
    paths = [K8S / name for name in resources()]
    done = validate_cli(paths, version)
    assert done.returncode == 0, done.stdout + done.stderr
    # A kind without a bundled schema only WARNs and exits 0: require a pass for each file.
    for path in paths:
        assert f"INFO {path} passed" in done.stdout, done.stdout
    assert "WARN" not in done.stdout


def test_strict_validation_rejects_a_misspelt_field(tmp_path):
    """The check above can fail: one wrong key in the Deployment is an error."""
    broken = tmp_path / "deployment.yaml"
    broken.write_text((K8S / "deployment.yaml").read_text().replace("readinessProbe", "readyProbe"))
    done = validate_cli([broken], VERSIONS[0])
    assert done.returncode != 0 and "readyProbe" in done.stdout


def test_kustomization_lists_every_plain_manifest():
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", KSERVE.name}
    assert set(resources()) == manifests
    images = {i["name"] for i in load("kustomization.yaml").get("images", [])}
    assert images <= {container()["image"].split(":")[0]}


def test_service_pdb_and_hpa_find_the_deployments_pods():
    dep = deployment()
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service, pdb, hpa = load("service.yaml"), load("pdb.yaml"), load("hpa.yaml")
    assert service["spec"]["selector"] == selector
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        dep["apiVersion"],
        dep["kind"],
        dep["metadata"]["name"],
    )
    # The Service's named target port is one the container declares.
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ports
    assert env(container()).get("BIND", f"0.0.0.0:{ports['http']}").endswith(f":{ports['http']}")
    # A budget that allows no disruption would block every node drain.
    assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"] <= hpa["spec"]["minReplicas"]


def test_probes_drain_security_and_architectures():
    dep, main = deployment(), container()
    assert main["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert main["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    startup = main["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60  # model load on a Pi
    pod = dep["spec"]["template"]["spec"]
    sleep = int(main["lifecycle"]["preStop"]["exec"]["command"][-1])
    graceful = int(env(main)["GRACEFUL_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > sleep + graceful
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    (arch,) = term["matchExpressions"]
    assert arch["key"] == "kubernetes.io/arch" and {"arm64", "amd64"} <= set(arch["values"])
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    model_mount = str(Path(env(main)["MODEL_DIR"]).parent)
    assert mounts[model_mount]["readOnly"] is True
    assert "/tmp" in mounts  # Gunicorn's heartbeat files and the metrics directory


def mebibytes(quantity):
    value, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(value) * (1024 if unit == "Gi" else 1)


def test_memory_request_covers_bench_peak_for_every_worker():
    """requests.memory >= WORKERS x one fp32 worker's peak RSS from docs/bench/results.json."""
    bench = json.loads((ROOT / "docs" / "bench" / "results.json").read_text())
    peak_mb = bench["startup"]["ours-fp32"]["peak_rss_mb"]
    main = container()
    workers = int(env(main)["WORKERS"])
    request = mebibytes(main["resources"]["requests"]["memory"]) * 1.048576  # MiB -> MB
    limit = mebibytes(main["resources"]["limits"]["memory"]) * 1.048576
    assert workers * peak_mb < request < limit


def test_probe_paths_answer_on_the_app_even_with_an_api_token(client, tiny_model_dir):
    """Probes send no token: with API_TOKEN set they must still get 200, not 401."""
    from app import create_app

    locked = create_app(make_config(tiny_model_dir, api_token="s3cret")).test_client()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = container()[probe]["httpGet"]["path"]
        assert client.get(path).status_code == 200, path
        assert locked.get(path).status_code == 200, path
    assert locked.post("/predict", json={"text": "[MASK]"}).status_code == 401


# -- KServe -----------------------------------------------------------------------------------


def kserve_documents():
    docs = [d for d in yaml.safe_load_all(KSERVE.read_text()) if d]
    return {d["kind"]: d for d in docs}


def kserve_schema():
    return json.loads((ROOT / "tests" / "kserve_schema.json").read_text())


def test_kserve_resources_match_the_schema_from_kserves_types():
    docs = kserve_documents()
    assert set(docs) == {"ServingRuntime", "InferenceService"}
    for doc in docs.values():
        jsonschema.validate(doc, kserve_schema())
    # The Kubernetes types inside a ServingRuntime, against Kubernetes' strict schemas.
    runtime = docs["ServingRuntime"]["spec"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "fillmask-runtime-check"},
        "spec": {"containers": runtime["containers"], "affinity": runtime["affinity"]},
    }
    kubernetes_validate.validate(pod, VERSIONS[0], strict=True)


def test_kserve_schema_rejects_a_misspelt_field():
    service = kserve_documents()["InferenceService"]
    service["spec"]["predictor"]["model"]["protocolversion"] = "v2"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(service, kserve_schema())


def test_inference_service_uses_the_runtime_with_protocol_v2_and_the_same_image():
    docs = kserve_documents()
    runtime, model = docs["ServingRuntime"], docs["InferenceService"]["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"] in runtime["spec"]["supportedModelFormats"]
    assert model["protocolVersion"] == "v2" and runtime["spec"]["protocolVersions"] == ["v2"]
    (server,) = runtime["spec"]["containers"]
    assert server["name"] == "kserve-container" and server["image"] == container()["image"]
    # KServe's storage initializer puts storageUri's files at /mnt/models.
    assert env(server)["MODEL_DIR"] == "/mnt/models"
    (port,) = server["ports"]
    assert env(server)["BIND"] == f"0.0.0.0:{port['containerPort']}"
    for probe in ("readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["path"] == container()[probe]["httpGet"]["path"]
