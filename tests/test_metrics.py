"""GET /metrics: names, wiring, who may read it, and a real Prometheus scraping two workers."""

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import ROOT, make_config
from live import GunicornServer, free_port
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families

PROMETHEUS = "/usr/bin/prometheus"


def scrape(client, **headers):
    """{(sample name, sorted labels): value} from the app's /metrics."""
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    return samples(r.get_data(as_text=True))


def samples(text):
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def metrics_app(tiny_model_dir):
    from app import create_app

    return create_app(make_config(tiny_model_dir, cache_size=8, metrics="on"))


def test_names_follow_the_prometheus_conventions(metrics_app):
    names = {name for name, _ in scrape(metrics_app.test_client())}
    for name in (
        "fillmask_model_run_duration_seconds_bucket",
        "fillmask_batch_size_count",
        "fillmask_batch_queue_duration_seconds_sum",
        "fillmask_cache_hits_total",
        "fillmask_cache_misses_total",
        "fillmask_model_info",
    ):
        assert name in names


def test_requests_runs_and_cache_are_counted(metrics_app):
    client = metrics_app.test_client()
    before = scrape(client)
    texts = ["今天天气真[MASK]啊", "床前明月[MASK]", "春眠不觉[MASK]"]
    assert client.post("/predict", json={"texts": texts}).status_code == 200
    assert client.post("/predict", json={"texts": texts}).status_code == 200  # from the cache
    assert client.post("/predict", json={"text": "没有面具"}).status_code == 400
    assert client.get("/no/such/page").status_code == 404
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("fillmask_requests_total", endpoint="/predict", status="200") == 2
    assert delta("fillmask_requests_total", endpoint="/predict", status="400") == 1
    assert delta("fillmask_requests_total", endpoint="unmatched", status="404") == 1
    assert delta("fillmask_request_duration_seconds_count", endpoint="/predict") == 3
    # The refused text missed the cache too: it was looked up before the model refused it.
    assert delta("fillmask_cache_misses_total") == 2 and delta("fillmask_cache_hits_total") == 1
    # One model run of three texts; the cached answer and the refused text ran nothing.
    model = {"model": "tiny-random-bert"}  # runs are counted by model
    assert delta("fillmask_batch_size_sum", **model) == 3
    assert delta("fillmask_model_run_duration_seconds_count", **model) == delta(
        "fillmask_batch_size_count", **model
    )
    assert delta("fillmask_batch_queue_duration_seconds_count") >= 1
    assert value(after, "fillmask_model_info", model="tiny-random-bert", precision="fp32") == 1


def test_several_apps_in_one_process(tiny_model_dir, metrics_app):
    from app import create_app

    second = create_app(make_config(tiny_model_dir, metrics="on"))  # no duplicate registration
    assert second.test_client().get("/metrics").status_code == 200


@pytest.mark.parametrize(
    "metrics, token, header, status",
    [
        ("auto", "", None, 200),
        ("auto", "s3cret", None, 401),
        ("auto", "s3cret", "Bearer s3cret", 200),
        ("auto", "s3cret", "Bearer wrong", 401),
        ("on", "s3cret", None, 200),
        ("token", "s3cret", None, 401),
        ("token", "s3cret", "Bearer s3cret", 200),
        ("off", "", None, 404),
    ],
)
def test_who_may_read(tiny_model_dir, metrics, token, header, status):
    from app import create_app

    app = create_app(make_config(tiny_model_dir, metrics=metrics, api_token=token))
    headers = {"Authorization": header} if header else {}
    r = app.test_client().get("/metrics", headers=headers)
    assert r.status_code == status
    if status != 200:
        assert r.is_json and r.get_json()["success"] is False


@pytest.mark.parametrize("metrics, token", [("token", ""), ("sometimes", "")])
def test_bad_setting_stops_the_app(tiny_model_dir, metrics, token):
    from app import create_app

    with pytest.raises(ValueError, match="METRICS"):
        create_app(make_config(tiny_model_dir, metrics=metrics, api_token=token))


def test_master_empties_the_directory(tmp_path, monkeypatch):
    from fillmask.config import Config
    from fillmask.metrics_setup import ENV, prepare_dir

    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.delenv(ENV, raising=False)
    assert prepare_dir(Config(metrics_dir=str(tmp_path))) == str(tmp_path)
    assert os.environ[ENV] == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    monkeypatch.delenv(ENV)
    assert prepare_dir(Config(metrics="off")) is None and ENV not in os.environ


def test_a_dead_worker_leaves_the_model_info(tmp_path, monkeypatch):
    """child_exit's mark_dead drops a dead worker's livemax gauge; its counters stay."""
    from fillmask.metrics_setup import ENV, mark_dead

    worker = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from fillmask import metrics; "
            "metrics.MODEL_INFO.labels('m', 'fp32').set(1); metrics.CACHE_HITS.inc(); "
            "print(os.getpid())",
        ],
        cwd=ROOT,
        env={**os.environ, ENV: str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )

    def collected():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
        return {s.name: s.value for family in registry.collect() for s in family.samples}

    assert collected()["fillmask_model_info"] == 1
    monkeypatch.setenv(ENV, str(tmp_path))
    mark_dead(int(worker.stdout))
    assert "fillmask_model_info" not in collected()
    assert collected()["fillmask_cache_hits_total"] == 1


def per_worker_predicts(metrics_dir, pid, scratch):
    """One worker's /predict count, read from its own file with prometheus_client's collector."""
    one = scratch / str(pid)
    one.mkdir()
    shutil.copy(metrics_dir / f"counter_{pid}.db", one)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(one))
    found = {
        (s.name, s.labels.get("endpoint")): s.value
        for family in registry.collect()
        for s in family.samples
        if s.labels.get("status") == "200"
    }
    return found.get(("fillmask_requests_total", "/predict"), 0)


def query(url, promql):
    """The value of a PromQL expression with one result, or None while there is none."""
    r = requests.get(url + "/api/v1/query", params={"query": promql}, timeout=5)
    result = r.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.mark.live
def test_prometheus_counts_every_request_over_both_workers(tiny_model_dir, tmp_path):
    if not Path(PROMETHEUS).exists():
        pytest.skip("needs Debian's prometheus at /usr/bin/prometheus")
    metrics_dir = tmp_path / "metrics"
    n = 40
    with GunicornServer(
        tiny_model_dir,
        WORKERS=2,
        THREADS=2,
        REUSE_PORT=1,
        METRICS="on",
        METRICS_DIR=metrics_dir,
    ) as server:
        port = free_port()
        prom_url = f"http://127.0.0.1:{port}"
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: fillmask\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{server.port}']\n"
        )
        log = open(tmp_path / "prometheus.log", "w")  # closed in the finally below
        prom = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            # Each request on its own connection (SO_REUSEPORT: each worker has its own socket),
            # four at a time: the kernel spreads them over both workers.
            texts = ["今天天气真[MASK]啊", "床前明月[MASK]", "春眠不觉[MASK]", "处处闻啼[MASK]"]

            def ask(i):
                body = {"text": texts[i % 4]}
                return requests.post(server.url + "/predict", json=body, timeout=30).status_code

            with ThreadPoolExecutor(4) as pool:
                assert list(pool.map(ask, range(n))) == [200] * n
            expected = {
                'sum(fillmask_requests_total{endpoint="/predict",status="200"})': n,
                'sum(fillmask_request_duration_seconds_count{endpoint="/predict"})': n,
                "sum(fillmask_cache_hits_total) + sum(fillmask_cache_misses_total)": n,
                "sum(fillmask_batch_size_sum) - sum(fillmask_cache_misses_total)": 0,
                'fillmask_model_info{model="tiny-random-bert",precision="fp32"}': 1,
            }
            got = {}
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    got = {q: query(prom_url, q) for q in expected}
                except (requests.RequestException, ValueError, KeyError):
                    got = {}
                if got == expected:
                    break
                time.sleep(0.5)
            assert got == expected, Path(tmp_path / "prometheus.log").read_text()[-2000:]
            per_worker = [
                per_worker_predicts(metrics_dir, pid, tmp_path) for pid in server.worker_pids()
            ]
            assert sum(per_worker) == n and all(count > 0 for count in per_worker), per_worker
        finally:
            prom.terminate()
            prom.wait(30)
            log.close()
