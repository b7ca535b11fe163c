"""The exporter on a tiny random BERT: parity with PyTorch, manifest, int8, error messages."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.export


@pytest.fixture(scope="module")
def manifest(tiny_model_dir):
    return json.loads((tiny_model_dir / "manifest.json").read_text(encoding="utf-8"))


def torch_rows(model, ids):
    """Log-probs at the [MASK] rows of one unpadded sequence, straight from PyTorch."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    positions = [i for i, t in enumerate(ids) if t == 103]
    return torch.log_softmax(logits[positions], dim=-1).numpy()


def test_tokenizer_reads_chinese_as_single_characters(tiny_model_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    enc = tok.encode("今天天气真[MASK]")
    assert enc.tokens == ["[CLS]", "今", "天", "天", "气", "真", "[MASK]", "[SEP]"]
    assert enc.ids[0] == 101 and enc.ids[-1] == 102 and enc.ids[-2] == 103
    vocab = (tiny_model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[0] == "[PAD]" and vocab[100] == "[UNK]" and vocab[103] == "[MASK]"
    assert len(vocab) == tok.get_vocab_size()


@pytest.mark.parametrize(
    "texts",
    [
        ["今天天气真[MASK]啊。"],
        ["[MASK][MASK]明月光，疑是地上[MASK]。"],
        [
            "画蛇[MASK]足",
            "锦上添[MASK]不如雪中送[MASK]。",
            "我们[MASK]好朋友，[MASK][MASK][MASK]。",
        ],
        ["没[MASK]", "春眠不觉[MASK]，处处闻啼鸟。夜来风雨[MASK]，花落知多少。"],
    ],
)
def test_onnx_equals_pytorch_on_padded_batches(predictor, tiny_torch, texts):
    items = [predictor.prepare(t) for t in texts]
    got = predictor.log_probs(items)
    for item, rows in zip(items, got, strict=True):
        ref = torch_rows(tiny_torch, list(item.input_ids))
        assert rows.shape == ref.shape == (item.num_masks, predictor.exclusion_bias.size)
        assert np.max(np.abs(rows - ref)) < 1e-4
        # The same top 5, where two words may trade places only on a near-tie in PyTorch.
        want, have = np.argsort(-ref, axis=1)[:, :5], np.argsort(-rows, axis=1)[:, :5]
        gap = np.take_along_axis(ref, want, axis=1) - np.take_along_axis(ref, have, axis=1)
        assert np.all(np.abs(gap) <= 2e-4)


@pytest.fixture(scope="module")
def parity_rows(tiny_model_dir, manifest):
    """fp32 and int8 log-prob rows (excluded ids at -inf) on the exporter's parity sentences,
    run as the exporter runs them (its window length, batches of 8)."""
    from fillmask import parity
    from fillmask.predictor import Predictor

    length = manifest["max_length"]
    fp32 = Predictor(tiny_model_dir, precision="fp32", max_length=length)
    int8 = Predictor(tiny_model_dir, precision="int8", max_length=length)
    items = [fp32.prepare(t) for t in parity.load_sentences()]
    bias = fp32.exclusion_bias
    fp32_rows = np.concatenate(parity.onnx_log_probs(fp32, items)) + bias
    int8_rows = np.concatenate(parity.onnx_log_probs(int8, items)) + bias
    return fp32_rows, int8_rows


def test_int8_ranks_close_to_fp32(parity_rows):
    """Every mask: each precision's first word is in the other's top 5; top-5 lists overlap."""
    a, b = parity_rows
    assert a.shape == b.shape and len(a) > 50
    top_a, top_b = np.argsort(-a, axis=1)[:, :5], np.argsort(-b, axis=1)[:, :5]
    for ra, rb in zip(top_a, top_b, strict=True):
        assert ra[0] in rb and rb[0] in ra
    overlap = np.mean([len(set(ra) & set(rb)) / 5 for ra, rb in zip(top_a, top_b, strict=True)])
    assert overlap >= 0.8


def test_manifest_int8_agreement_is_measured(manifest, parity_rows):
    """The manifest's figure is the share of parity masks where both give the same first word."""
    a, b = parity_rows
    reported = manifest["parity"]["int8_vs_fp32"]
    assert reported["masks"] == len(a)
    assert reported["top1_agreement"] == pytest.approx(
        float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))), abs=1e-4
    )


def test_manifest_contents(manifest, tiny_model_dir):
    from fillmask.model_files import sha256_of

    assert manifest["source"].endswith("tiny-src")
    assert manifest["model_name"] == "tiny-random-bert"
    assert set(manifest["versions"]) >= {"torch", "transformers", "onnxruntime", "onnx"}
    assert manifest["opset"] == 17
    assert list(manifest["inputs"]) == ["input_ids", "attention_mask"]
    assert list(manifest["outputs"]) == ["log_probs"]
    assert manifest["max_length"] == 128 and manifest["vocab_size"] > 400
    assert manifest["special_tokens"] == {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
    assert manifest["precisions"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    # every optimisation the service relies on happened
    assert manifest["fusions"]["Attention"] == 2
    assert manifest["fusions"]["EmbedLayerNormalization"] == 1
    # left unfused on purpose: slower than Add + LayerNormalization (export.fusion_options)
    assert "SkipLayerNormalization" not in manifest["fusions"]
    for name, entry in manifest["files"].items():
        path = tiny_model_dir / name
        assert entry == {"sha256": sha256_of(path), "bytes": path.stat().st_size}
    parity = manifest["parity"]
    assert parity["sentences"] >= 50
    assert parity["fp32"]["passed"] and parity["fp32"]["max_abs_diff"] <= 1e-3
    assert parity["fp32"]["masks"] > 50
    assert manifest["export"]["peak_rss_mb"] > 0


def test_int8_is_smaller_and_loads(tiny_model_dir):
    import onnxruntime as ort

    fp32 = (tiny_model_dir / "model.onnx").stat().st_size
    int8 = (tiny_model_dir / "model.int8.onnx").stat().st_size
    assert int8 < 0.7 * fp32
    session = ort.InferenceSession(
        str(tiny_model_dir / "model.int8.onnx"), providers=["CPUExecutionProvider"]
    )
    ops = {
        n.op_type
        for n in __import__("onnx").load(str(tiny_model_dir / "model.int8.onnx")).graph.node
    }
    # int8 products with a scale per activation row (test_int8_invariance), none per run
    assert {"MatMulInteger", "QuantizeLinear"} <= ops and "DynamicQuantizeLinear" not in ops
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]


def test_graph_has_dynamic_axes_and_gathers_before_the_head(tiny_model_dir):
    import onnx

    graph = onnx.load(str(tiny_model_dir / "model.onnx")).graph
    for inp in graph.input:
        dims = inp.type.tensor_type.shape.dim
        assert len(dims) == 2 and all(d.dim_param for d in dims)
    out = graph.output[0].type.tensor_type.shape.dim
    assert out[0].dim_param and out[1].dim_value > 400
    assert "NonZero" in {n.op_type for n in graph.node}


def test_no_weights_are_tracked_by_git():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert not [f for f in tracked if f.endswith((".onnx", ".safetensors", ".bin", ".data"))]
    assert not [f for f in tracked if f.startswith("models/") and f != "models/README.md"]


def run_exporter(*args, env_extra=None):
    import os

    env = dict(os.environ, HF_HUB_OFFLINE="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, str(ROOT / "export_onnx.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_offline_hub_id_fails_with_instructions(tmp_path):
    result = run_exporter(
        "--model", "google-bert/bert-base-chinese", "--output", str(tmp_path / "out")
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "local copy" in result.stderr and "save_pretrained" in result.stderr
    assert "--model ./bert-base-chinese" in result.stderr


def test_not_a_model_directory(tmp_path):
    result = run_exporter("--model", str(tmp_path), "--output", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not a model directory" in result.stderr


def test_parity_failure_exits_non_zero(tiny_source, tmp_path, monkeypatch):
    """A graph that differs from PyTorch must fail the export."""
    import export_onnx
    from fillmask import parity

    monkeypatch.setattr(parity, "TOLERANCE", -1.0)  # nothing can pass a negative tolerance
    rc = export_onnx.main(["--model", str(tiny_source), "--output", str(tmp_path / "x")])
    assert rc == 1


def test_a_model_without_its_mlm_head_is_refused(tiny_source, tmp_path, capsys):
    """A BertModel checkpoint loads as BertForMaskedLM with a random head: refused, by name."""
    from transformers import BertForMaskedLM, BertTokenizerFast

    import export_onnx

    encoder_only = tmp_path / "bert-model"
    BertForMaskedLM.from_pretrained(tiny_source).bert.save_pretrained(encoder_only)
    BertTokenizerFast.from_pretrained(tiny_source).save_pretrained(encoder_only)
    out = tmp_path / "out"
    assert export_onnx.main(["--model", str(encoder_only), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no trained masked-LM head" in err and "cls.predictions.transform.dense.weight" in err
    assert "Traceback" not in err and not out.exists()


def test_a_masked_lm_that_is_not_bert_is_refused(tmp_path, capsys):
    from transformers import RobertaConfig, RobertaForMaskedLM

    import export_onnx

    sizes = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    RobertaForMaskedLM(RobertaConfig(vocab_size=100, **sizes)).save_pretrained(tmp_path / "r")
    assert export_onnx.main(["--model", str(tmp_path / "r"), "--output", str(tmp_path / "o")]) == 2
    assert "a RobertaForMaskedLM, not a BertForMaskedLM" in capsys.readouterr().err
