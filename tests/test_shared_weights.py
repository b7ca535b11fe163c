"""One copy of the weights per machine (issue 19): the prepacked copy, its cache, its failures.

The reference for every answer is a plain session on the exported file (``shared=False``),
which never touches the cache: the shared copy must answer exactly as it does. The memory test
at the end runs real Gunicorn servers and reads /proc/PID/smaps_rollup.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from fillmask import session as ws
from fillmask.errors import ModelFilesError
from fillmask.session import create_session, weights_cache_dir

ROOT = Path(__file__).resolve().parents[1]
FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


def feeds(model_dir, batch=3, length=12):
    """A fixed batch with one mask per row, ids from the model's own manifest."""
    manifest = json.loads((Path(model_dir) / "manifest.json").read_text())
    special = manifest["special_tokens"]
    rng = np.random.default_rng(0)
    ids = rng.integers(special["mask"] + 3, manifest.get("vocab_size", 600), (batch, length))
    ids[:, 0], ids[:, -1] = special["cls"], special["sep"]
    ids[np.arange(batch), 1 + np.arange(batch)] = special["mask"]
    return {"input_ids": ids.astype(np.int64), "attention_mask": np.ones_like(ids)}


def answer(session, model_dir):
    """The session's log-probs on ``feeds``."""
    names = [i.name for i in session.get_inputs()]
    batch = feeds(model_dir)
    return session.run(None, {k: batch[k] for k in names})[0]


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    """A private copy of the tiny model directory: tests here change files in it."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy, ignore=shutil.ignore_patterns(".weights-cache"))
    return copy


def entries(cache, name="model.onnx"):
    """The prepacked copies of ``name`` kept under ``cache`` (finished or not)."""
    return sorted(p.name for p in Path(cache).rglob(f"{name}-*") if p.is_dir())


def entry_of(cache, name="model.onnx"):
    """The one prepacked copy of ``name`` under ``cache``."""
    (entry,) = [p for p in Path(cache).rglob(f"{name}-*") if p.is_dir()]
    return entry


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_shared_copy_answers_exactly_like_the_exported_file(model_copy, tmp_path, precision):
    source = model_copy / FILES[precision]
    expected = answer(create_session(source), model_copy)
    cache = tmp_path / "cache"
    got = answer(create_session(source, shared=True, cache_dir=str(cache)), model_copy)
    np.testing.assert_array_equal(got, expected)
    entry = entry_of(cache, source.name)
    stamp = json.loads((entry / "stamp.json").read_text())
    assert set(stamp["files"]) == {"model.onnx", "model.data"}
    # The weights are in the data file (mapped), not in the graph (parsed onto the heap). How
    # much packed data comes with them depends on the CPU's kernels (on the A72 int8 adds none).
    assert (entry / "model.data").stat().st_size > 0.5 * source.stat().st_size


def test_a_second_session_maps_the_same_copy_without_rebuilding(model_copy, tmp_path):
    source, cache = model_copy / "model.onnx", tmp_path / "cache"
    first = create_session(source, shared=True, cache_dir=str(cache))
    entry = entry_of(cache)
    made = (entry / "model.data").stat()
    second = create_session(source, shared=True, cache_dir=str(cache))
    again = (entry / "model.data").stat()
    assert (again.st_ino, again.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    # Mapped, not read into the heap: the file appears in this process's memory map.
    assert str(entry / "model.data") in Path("/proc/self/maps").read_text()
    np.testing.assert_array_equal(answer(first, model_copy), answer(second, model_copy))


def made_copy(model_copy, cache):
    """Make the copy of model.onnx; return its entry and the reference answer."""
    source = model_copy / "model.onnx"
    expected = answer(create_session(source), model_copy)
    create_session(source, shared=True, cache_dir=str(cache))
    entry = entry_of(cache)
    return source, entry, expected


def overwrite(path, offset, data, keep_mtime=False):
    """Write ``data`` into ``path`` at ``offset`` in place, optionally restoring its mtime."""
    before = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.parametrize(
    "damage",
    ["truncated", "bytes overwritten", "stamp garbled", "stamp missing", "half-written copy"],
)
def test_a_damaged_copy_is_rebuilt_not_used(model_copy, tmp_path, damage):
    cache = tmp_path / "cache"
    source, entry, expected = made_copy(model_copy, cache)
    data = entry / "model.data"
    if damage == "truncated":
        os.truncate(data, data.stat().st_size // 2)
    elif damage == "bytes overwritten":
        overwrite(data, data.stat().st_size // 2, b"\xff" * 4096)
    elif damage == "stamp garbled":
        (entry / "stamp.json").write_text("{not json")
    elif damage == "stamp missing":
        (entry / "stamp.json").unlink()
    else:  # a builder killed mid-write leaves its work directory behind
        (entry.parent / (entry.name + ".tmp")).mkdir()
        (entry.parent / (entry.name + ".tmp") / "model.data").write_bytes(b"\0" * 100)
        shutil.rmtree(entry)
    got = answer(create_session(source, shared=True, cache_dir=str(cache)), model_copy)
    np.testing.assert_array_equal(got, expected)
    assert entries(cache) == [entry.name]  # rebuilt in place; nothing half-written left
    assert json.loads((entry / "stamp.json").read_text())["files"]["model.data"]["bytes"] == (
        data.stat().st_size
    )


def test_damage_that_keeps_size_and_mtime_is_caught_by_sha256(model_copy, tmp_path):
    cache = tmp_path / "cache"
    source, entry, expected = made_copy(model_copy, cache)
    data = entry / "model.data"
    overwrite(data, data.stat().st_size // 2, b"\x7f" * 4096, keep_mtime=True)
    session = create_session(source, shared=True, cache_dir=str(cache), verify="sha256")
    np.testing.assert_array_equal(answer(session, model_copy), expected)


def test_a_graph_onnxruntime_cannot_read_is_rebuilt_once(model_copy, tmp_path):
    cache = tmp_path / "cache"
    source, entry, expected = made_copy(model_copy, cache)
    graph = entry / "model.onnx"
    overwrite(graph, 0, b"\xff" * graph.stat().st_size, keep_mtime=True)  # the stamp still fits
    got = answer(create_session(source, shared=True, cache_dir=str(cache)), model_copy)
    np.testing.assert_array_equal(got, expected)


def test_a_re_exported_model_gets_a_new_copy_and_the_old_one_goes(model_copy, tmp_path):
    cache = tmp_path / "cache"
    source, entry, _ = made_copy(model_copy, cache)
    # The exporter replaces model.onnx: a new file (here the int8 graph, so answers differ).
    shutil.copyfile(model_copy / "model.int8.onnx", source)
    expected = answer(create_session(source), model_copy)
    got = answer(create_session(source, shared=True, cache_dir=str(cache)), model_copy)
    np.testing.assert_array_equal(got, expected)
    (new,) = entries(cache)
    assert new != entry.name


def test_a_copy_made_on_another_cpu_is_not_used(model_copy, tmp_path, monkeypatch):
    """A model directory copied from a PC to a Pi brings the PC's copy along: never used."""
    cache = tmp_path / "cache"
    source, entry, expected = made_copy(model_copy, cache)
    # The other machine's copy of the same file: another key; make its data garbage so that
    # using it would show in the answer.
    overwrite(entry / "model.data", 0, b"\x01" * (entry / "model.data").stat().st_size)
    monkeypatch.setattr(ws.platform, "machine", lambda: "another-cpu")
    assert ws.weights_key(source) != entry.name.rsplit("-", 1)[1]
    got = answer(create_session(source, shared=True, cache_dir=str(cache)), model_copy)
    np.testing.assert_array_equal(got, expected)
    assert entries(cache) == [f"model.onnx-{ws.weights_key(source)}"]


def test_the_key_names_onnxruntime_and_the_cpu(model_copy, monkeypatch):
    source = model_copy / "model.onnx"
    key = ws.weights_key(source)
    monkeypatch.setattr(ws.ort, "__version__", "0.0.1")
    assert ws.weights_key(source) != key
    monkeypatch.undo()
    monkeypatch.setattr(ws, "CPU_FIELDS", set())  # /proc/cpuinfo's model and flags dropped
    assert ws.weights_key(source) != key or not Path("/proc/cpuinfo").exists()


@pytest.fixture
def read_only_model(model_copy):
    """``model_copy`` made read-only: a read-only bind mount as root, else file modes."""
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "--bind", model_copy, model_copy], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot bind-mount: {mounted.stderr.decode().strip()}")
        subprocess.run(["mount", "-o", "remount,ro,bind", model_copy], check=True)
        yield model_copy
        subprocess.run(["umount", model_copy], check=True)
    else:
        model_copy.chmod(0o555)
        yield model_copy
        model_copy.chmod(0o755)


def test_a_read_only_model_directory_keeps_its_copy_in_the_user_cache(
    read_only_model, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = weights_cache_dir(read_only_model)
    assert cache.parent == tmp_path / "xdg" / "fillmask"
    source = read_only_model / "model.onnx"
    expected = answer(create_session(source), read_only_model)
    got = answer(create_session(source, shared=True), read_only_model)
    np.testing.assert_array_equal(got, expected)
    assert entries(cache) and not (read_only_model / ".weights-cache").exists()


def test_a_writable_model_directory_keeps_its_copy_inside(model_copy):
    assert weights_cache_dir(model_copy) == model_copy.resolve() / ".weights-cache"


def test_two_model_directories_never_share_a_configured_cache_directory(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = weights_cache_dir(tmp_path / "a", str(tmp_path / "c"))
    assert first != weights_cache_dir(tmp_path / "b", str(tmp_path / "c"))
    assert first.parent == tmp_path / "c"


def assert_one_line_refusal(exc, *words):
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    for word in ("WEIGHTS_CACHE_DIR", "SHARE_WEIGHTS=0", *words):
        assert word in message


def test_an_unwritable_cache_directory_is_one_line_refusal(model_copy, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ModelFilesError) as exc:
        create_session(model_copy / "model.onnx", shared=True, cache_dir=str(tmp_path / "file"))
    assert_one_line_refusal(exc, str(tmp_path / "file"))


def test_a_full_disk_is_one_line_refusal_and_leaves_nothing_behind(model_copy, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    # Room for a third of the copy: onnxruntime's write fails part-way, as on a full disk.
    size = max(64, (model_copy / "model.onnx").stat().st_size * 2 // 3 // 1024)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}k", "tmpfs", small], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(ModelFilesError) as exc:
            create_session(model_copy / "model.onnx", shared=True, cache_dir=str(small))
        assert_one_line_refusal(exc, "MB free")
        leftovers = [p.name for p in small.rglob("*") if not p.name.endswith(".lock")]
        assert (
            leftovers
            == [p.name for p in small.iterdir() if p.is_dir()]
            == [weights_cache_dir(model_copy, str(small)).name]
        )
    finally:
        subprocess.run(["umount", small], check=True)


BUILD_AND_ANSWER = r"""
import json, logging, sys
sys.path.insert(0, sys.argv[1])
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
sys.path.insert(0, sys.argv[1] + "/tests")
from test_shared_weights import answer
from fillmask.session import create_session
from pathlib import Path
model = Path(sys.argv[2])
sys.stdin.readline()  # all processes start building at the same moment
session = create_session(model / "model.onnx", shared=True, cache_dir=sys.argv[3])
print(json.dumps(answer(session, model).tolist()))
"""


def test_processes_starting_at_once_build_one_copy_and_agree(model_copy, tmp_path):
    """Workers of two masters starting together on one directory: one builds, all map it."""
    cache = tmp_path / "cache"
    expected = answer(create_session(model_copy / "model.onnx"), model_copy)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD_AND_ANSWER, str(ROOT), str(model_copy), str(cache)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    for out, _ in outputs:
        np.testing.assert_array_equal(np.array(json.loads(out), dtype=np.float32), expected)
    builds = sum(err.count("prepacked copy of") for _, err in outputs)
    assert builds == 1, [err for _, err in outputs]
    assert len(entries(cache)) == 1


# -- live: Gunicorn servers -----------------------------------------------------------------------
@pytest.mark.live
def test_two_masters_started_at_once_on_one_model_directory(model_copy, tmp_path):
    from tests.live import GunicornServer

    servers = [
        GunicornServer(model_copy, WORKERS="2", SHARE_WEIGHTS="1", CACHE_SIZE="0") for _ in range(2)
    ]
    threads = [threading.Thread(target=s.start) for s in servers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        import requests

        bodies = [
            requests.post(
                s.url + "/predict", json={"text": "今天天气很[MASK]。"}, timeout=30
            ).json()
            for s in servers
        ]
    finally:
        for server in servers:
            server.stop()
    for body in bodies:
        body.pop("elapsed_ms", None)
    assert bodies[0] == bodies[1] and bodies[0]["success"] is True, bodies
    logs = "".join(s.output() for s in servers)
    assert logs.count("prepacked copy of") == 1, logs
    assert len(entries(model_copy / ".weights-cache")) == 1


@pytest.fixture(scope="module")
def mid_model_dir(tmp_path_factory):
    """A random Chinese BERT big enough that a copy of its weights stands out in PSS.

    Hidden 512, 4 layers, bert-base-chinese's vocabulary size: model.onnx ~94 MB, int8 ~24 MB.
    """
    pytest.importorskip("torch")
    import export_onnx
    from fillmask.random_model import build_random_model

    base = tmp_path_factory.mktemp("mid")
    build_random_model(
        base / "src",
        vocab_size=21128,
        hidden_size=512,
        num_layers=4,
        num_heads=8,
        intermediate_size=2048,
        max_position_embeddings=128,
    )
    args = ["--model", str(base / "src"), "--output", str(base / "model"), "--int8"]
    assert export_onnx.main(args + ["--name", "mid-random-bert"]) == 0
    return base / "model"


@pytest.mark.live
@pytest.mark.load  # ~2 min (a model export, eight servers): once per test command, not per seed
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_each_extra_worker_adds_little_memory(mid_model_dir, tmp_path, precision):
    """Summed PSS of master + workers, after every worker answered, with 1 and 3 workers.

    The issue's budget is 80 MB per extra worker at bert-base-chinese's size, where a copy of
    the weights is 400 MB (fp32) or 120 MB (int8). This model's weights are ~4x smaller, while
    what a worker holds besides them (interpreter, imports, tokenizer, activation arena) is
    about the same or smaller, so the 80 MB stays as it is, and sharing is shown by comparing
    with SHARE_WEIGHTS=0: at least 80 % of the weights' bytes must no longer be per worker.
    """
    from fillmask.bench import workers_memory

    weights_mb = (mid_model_dir / FILES[precision]).stat().st_size / 2**20
    cache = tmp_path / "cache"
    growth = {}
    for shared in (False, True):
        rows = {
            n: workers_memory.server_memory(mid_model_dir, precision, n, shared, cache, tokens=32)
            for n in (1, 3)
        }
        growth[shared] = workers_memory.per_extra_worker(rows, 1, 3)
    assert growth[True] <= 80, growth
    assert growth[True] <= growth[False] - 0.8 * weights_mb, (growth, weights_mb)
