"""Other Chinese BERT shapes through the real exporter: the small models a Raspberry Pi needs.

Random models of hfl/rbt3's shape (3 layers, hidden 768, 12 heads, intermediate 3072) and of
uer/chinese_roberta_L-4_H-256 (4 layers, hidden 256, 4 heads, intermediate 1024, bert-base-
chinese's 21,128-token vocabulary) are exported with --int8 and checked against PyTorch on the
same weights. rbt3's shape uses the generated small vocabulary to keep the test short: its
vocabulary is bert-base-chinese's, whose size the uer shape already covers.
"""

import json

import numpy as np
import pytest
from conftest import SEED
from reference import TOL, mask_log_probs
from test_int8_invariance import assert_batch_invariant

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.export

SHAPES = {
    "rbt3": dict(hidden_size=768, num_layers=3, num_heads=12, intermediate_size=3072),
    "uer-L4-H256": dict(
        vocab_size=21128, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024
    ),
}
TEXTS = [
    "今天天气真[MASK]啊。",
    "床前明月光，疑是地上[MASK]。",
    "[MASK][MASK]添足",
    "我们是好朋[MASK]",
]
INT8_TOL = 0.2  # log-prob; int8 vs PyTorch measured 0.04-0.08 on the parity sentences


@pytest.fixture(scope="module", params=list(SHAPES))
def shaped(request, tmp_path_factory):
    """(shape, save_pretrained directory, exported model directory) of one random model."""
    import export_onnx
    from fillmask.random_model import build_random_model

    shape = SHAPES[request.param]
    base = tmp_path_factory.mktemp(request.param)
    source = build_random_model(base / "src", max_position_embeddings=512, seed=SEED, **shape)
    out = base / "model"
    args = ["--model", str(source), "--output", str(out), "--int8", "--max-length", "128"]
    assert export_onnx.main(args) == 0
    return shape, source, out


def test_the_manifest_describes_the_model(shaped):
    import onnx

    shape, _, out = shaped
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["architecture"] == {
        "layers": shape["num_layers"],
        "hidden": shape["hidden_size"],
        "heads": shape["num_heads"],
    }
    assert manifest["vocab_size"] == shape.get("vocab_size", manifest["vocab_size"])
    assert manifest["fusions"]["Attention"] == shape["num_layers"]
    assert manifest["fusions"]["EmbedLayerNormalization"] == 1
    parity = manifest["parity"]
    assert parity["fp32"]["passed"] and parity["fp32"]["max_abs_diff"] <= 1e-3
    assert parity["int8_vs_fp32"]["masks"] == parity["fp32"]["masks"] > 50
    assert parity["int8_vs_pytorch"]["max_abs_diff"] <= INT8_TOL
    # Each fused attention splits the model's own head count, fp32 and int8 alike.
    for name, op in (("model.onnx", "Attention"), ("model.int8.onnx", "MultiHeadAttention")):
        nodes = [n for n in onnx.load(str(out / name)).graph.node if n.op_type == op]
        assert len(nodes) == shape["num_layers"]
        heads = {a.i for n in nodes for a in n.attribute if a.name == "num_heads"}
        assert heads == {shape["num_heads"]}


def test_fp32_and_int8_match_pytorch(shaped):
    """A padded batch of texts through the service's predictor, against PyTorch text by text."""
    from transformers import BertForMaskedLM, BertTokenizerFast

    from fillmask.predictor import Predictor

    _, source, out = shaped
    model = BertForMaskedLM.from_pretrained(source, attn_implementation="eager").eval()
    tokenizer = BertTokenizerFast.from_pretrained(source)
    want = [mask_log_probs(model, tokenizer, text) for text in TEXTS]
    for precision, tol in (("fp32", TOL), ("int8", INT8_TOL)):
        predictor = Predictor(out, precision=precision, max_length=128)
        got = predictor.log_probs([predictor.prepare(text) for text in TEXTS])
        for text, rows, ref in zip(TEXTS, got, want, strict=True):
            assert rows.shape == ref.shape, text
            assert np.max(np.abs(rows - ref)) <= tol, (precision, text)


def test_int8_is_batch_invariant(shaped):
    assert_batch_invariant(shaped[2])


def test_served_by_create_app_as_pytorch_ranks(shaped):
    """/predict of the app on this model: every mask's top 5 is PyTorch's (tie-tolerant)."""
    from conftest import make_config
    from reference import assert_top_k, offerable
    from transformers import BertForMaskedLM, BertTokenizerFast

    from app import create_app

    _, source, out = shaped
    model = BertForMaskedLM.from_pretrained(source, attn_implementation="eager").eval()
    tokenizer = BertTokenizerFast.from_pretrained(source)
    client = create_app(make_config(out)).test_client()
    text = "床前明月[MASK]，疑是地上[MASK]。"
    body = client.post("/predict", json={"text": text, "top_k": 5}).get_json()
    rows = mask_log_probs(model, tokenizer, text)
    assert len(body["masks"]) == len(rows) == 2
    for mask, row in zip(body["masks"], rows, strict=True):
        got = [(c["token_id"], c["score"]) for c in mask["candidates"]]
        assert_top_k(got, row, offerable(tokenizer), 5)
