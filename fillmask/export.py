"""Turn a Hugging Face BERT masked-LM into the optimised ONNX graph the service runs.

Needs torch + transformers + onnx; only the exporter (and tests, bench) import this module.

The graph takes ``input_ids`` and ``attention_mask`` ([batch, seq], int64, both axes dynamic),
finds the ``[MASK]`` positions itself, gathers only those hidden rows and applies the MLM head to
them, returning ``log_probs`` [masks, vocab]: one row per mask, in row-major order (first
sequence's masks left to right, then the next sequence's). Gathering before the head skips the
768x21128 decoder GEMM for every unmasked token and shrinks the output from 5.4 MB (64 tokens of
full logits) to 84 KB per mask. Log-probabilities rather than in-graph top-k keep ``targets``
scoring and exclusion of special tokens exact and cheap in numpy.
"""

import ctypes
import gc
import logging
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "google-bert/bert-base-chinese"
INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAMES = ["log_probs"]


class ExportError(Exception):
    """A failure the exporter reports as one clear line (no traceback)."""


def load_source(source):
    """Load ``BertForMaskedLM`` + fast tokenizer from a hub id or a local save_pretrained dir."""
    local = Path(source).expanduser()
    looks_local = local.exists() or source.startswith((".", "/", "~"))
    if looks_local and not (local / "config.json").is_file():
        raise ExportError(
            f"{source}: not a model directory (no config.json). Pass a directory written by "
            "save_pretrained() or a hub id such as google-bert/bert-base-chinese."
        )
    # Imported only now: a wrong path is told at once, not after seconds of importing torch.
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    try:
        # Eager attention: the TorchScript exporter cannot trace SDPA, and only this path lets
        # onnxruntime's optimizer fuse Attention and EmbedLayerNormalization (see export_graph).
        model, info = AutoModelForMaskedLM.from_pretrained(
            str(local) if looks_local else source,
            attn_implementation="eager",
            output_loading_info=True,
        )
        check_head(source, model, info)
        tokenizer = AutoTokenizer.from_pretrained(str(local) if looks_local else source)
    except OSError as exc:
        raise ExportError(
            f"could not load '{source}': {str(exc).splitlines()[0]}\n"
            "No network access to the Hugging Face hub, or no such model. Supply a local copy: "
            "on a machine with internet run\n"
            '  python -c "from transformers import AutoModelForMaskedLM, AutoTokenizer; '
            f"[c.from_pretrained('{DEFAULT_SOURCE}').save_pretrained('bert-base-chinese') "
            'for c in (AutoModelForMaskedLM, AutoTokenizer)]"\n'
            "copy the folder here and pass it: python export_onnx.py --model ./bert-base-chinese"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"{source}: a fast tokenizer (tokenizer.json) is needed")
    if tokenizer.mask_token_id is None:
        raise ExportError(f"{source}: the tokenizer has no [MASK] token")
    model.eval()
    return model, tokenizer


def check_head(source, model, info):
    """Refuse a model that is not a BERT masked LM, or whose MLM head transformers had to
    initialise (a BertModel checkpoint, say): it would export, pass parity and answer noise."""
    if not (hasattr(model, "bert") and hasattr(model, "cls")):
        raise ExportError(f"{source}: a {type(model).__name__}, not a BertForMaskedLM")
    fresh = sorted(key for key in info["missing_keys"] if key.startswith("cls."))
    if fresh:
        raise ExportError(
            f"{source}: no trained masked-LM head (newly initialised: {', '.join(fresh)}); "
            "export a checkpoint saved with its MLM head (BertForMaskedLM), not a BertModel"
        )


def masked_row_module(model, mask_token_id):
    """Wrap a ``BertForMaskedLM`` so it returns log-probs for the [MASK] rows only."""
    import torch

    class MaskedRowHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = model.bert
            self.cls = model.cls

        def forward(self, input_ids, attention_mask):
            # token_type_ids are all zero for single sentences; passing them keeps the
            # embedding sub-graph in the shape the optimizer's EmbedLayerNormalization expects.
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            flat = hidden.reshape(-1, hidden.shape[-1])
            rows = torch.nonzero(input_ids.reshape(-1) == mask_token_id).squeeze(1)
            # Gathering on the 2-D view also keeps the tied embedding/decoder matrix stored once.
            picked = flat.index_select(0, rows)
            return torch.log_softmax(self.cls(picked), dim=-1)

    return MaskedRowHead().eval()


def export_graph(model, mask_token_id, path, opset=17):
    """Export the masked-row graph with the TorchScript exporter.

    Chosen by measurement: with torch 2.13 the dynamo exporter's graphs got 0 Attention and 0
    EmbedLayerNormalization fusions from onnxruntime's optimizer, the TorchScript one (with
    eager attention) gets all of them, which is most of the fp32 speed-up.
    """
    import torch

    module = masked_row_module(model, mask_token_id)
    ids = torch.tensor([[101, 872, 103, 1962, 103, 102], [101, 103, 1962, 102, 0, 0]])
    ids = ids.clamp(max=model.config.vocab_size - 1)
    ids[ids == 103] = mask_token_id
    mask = (ids != 0).long()
    mask[0] = 1
    axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "log_probs": {0: "masks"},
    }
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about data-dependent branches that are constant for BERT.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (ids, mask),
            str(path),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return path


def optimize_graph(src, dst, num_heads, hidden_size):
    """Run onnxruntime's BERT optimizer; return the fused-operator counts."""
    from onnxruntime.transformers import optimizer

    with collecting_cycles():
        opt = optimizer.optimize_model(
            str(src),
            model_type="bert",
            num_heads=num_heads,
            hidden_size=hidden_size,
            opt_level=0,
            optimization_options=fusion_options(),
        )
        fusions = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
        opt.save_model_to_file(str(dst))
    return fusions


def fusion_options():
    """The optimizer's BERT fusions except SkipLayerNormalization.

    Measured by bench.py's profiling on x86 (onnxruntime 1.32, bert-base, 1 thread, 64 tokens):
    the 24 fused SkipLayerNormalization kernels took 4.6 ms per run where plain Add +
    LayerNormalization took 0.9 ms, the whole graph 5-7 % slower. ``create_session`` keeps
    onnxruntime from fusing them again when it loads the model.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    return options


@contextmanager
def collecting_cycles(interval=0.2):
    """Run ``gc.collect()`` every ``interval`` seconds while the block runs.

    Each fusion pass of the optimizer makes a symbolic shape-inference helper holding a full copy
    of the model (400 MB for bert-base) in a reference cycle; Python's gc, counting objects rather
    than bytes, frees them only much later. Collecting often cut the optimizer's peak from 2.9 to
    2.1 GB (bert-base), part of fitting the export into a 4 GB Raspberry Pi.
    """
    done = threading.Event()

    def collect():
        while not done.wait(interval):
            gc.collect()

    thread = threading.Thread(target=collect, name="gc-collector", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        release_memory()


def release_memory():
    """Free unreachable objects, then hand the freed heap back to the OS.

    glibc keeps freed protobuf buffers in its heap: after the optimizer 1 GB stayed resident
    until ``malloc_trim``, and the next step's peak came on top of it.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc (musl, macOS): nothing to trim


def save_tokenizer(tokenizer, out_dir):
    """Write tokenizer.json (usable by ``tokenizers`` alone) and vocab.txt."""
    # tokenizer_config.json comes along: tiny, and lets transformers users load the folder too.
    tokenizer.save_pretrained(str(out_dir))
    # transformers 5 no longer writes vocab.txt for fast tokenizers; write it from the vocab.
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    if [i for _, i in vocab] != list(range(len(vocab))):
        raise ExportError("the tokenizer's vocabulary ids are not contiguous")
    (Path(out_dir) / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab), encoding="utf-8")
    if not (Path(out_dir) / "tokenizer.json").is_file():
        raise ExportError("the tokenizer did not produce tokenizer.json")


class Timer:
    """Print a numbered step with its duration, as the exporter's progress log."""

    def __init__(self, total):
        self.total = total
        self.step = 0

    def run(self, title, func, *args, **kwargs):
        self.step += 1
        print(f"[{self.step}/{self.total}] {title} ...", flush=True)
        start = time.perf_counter()
        result = func(*args, **kwargs)
        print(f"      done in {time.perf_counter() - start:.1f} s", flush=True)
        return result
