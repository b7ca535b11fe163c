"""Export a Chinese BERT masked-LM to the optimised ONNX model directory the service reads.

    python export_onnx.py                                   # google-bert/bert-base-chinese
    python export_onnx.py --model ./bert-base-chinese --output models/bert-base-chinese --int8

Steps: load (hub id or local save_pretrained dir) → PyTorch reference on the parity sentences →
ONNX export (masked rows only) → onnxruntime BERT fusions → optional dynamic int8 → tokenizer
files + manifest.json → parity check (fails loudly if fp32 differs from PyTorch). Everything is
written to a temporary directory next to ``--output`` and moved into place only when parity
passed: a failed or interrupted export never leaves a model the service would load.
Needs requirements-export.txt (torch, transformers, onnx); the service itself does not.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from fillmask import export, parity, quantize
from fillmask.model_files import MANIFEST, PRECISION_FILES, file_entry

DEFAULT_OUTPUT = "models/bert-base-chinese"


def get_args(argv=None):
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=export.DEFAULT_SOURCE,
        help=f"hub id or local save_pretrained directory (default {export.DEFAULT_SOURCE})",
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        help=f"model directory to write (default {DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--int8", action="store_true", help="also write model.int8.onnx (dynamic int8 quantisation)"
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="longest window the service may use (default: the model's "
        "max_position_embeddings, 512 for bert-base-chinese)",
    )
    parser.add_argument(
        "--name",
        default=None,
        help="model name reported by the service (default: the source's name)",
    )
    return parser.parse_args(argv)


def peak_rss_mb():
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def versions():
    """Library versions recorded in the manifest."""
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def write_manifest(out, manifest):
    """Write manifest.json with real characters and stable key order."""
    (out / MANIFEST).write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )


def build(args, out):
    """Run every step, writing into ``out``; return the manifest (raises ExportError)."""
    from fillmask.predictor import Predictor

    started = time.perf_counter()
    steps = export.Timer(7 if args.int8 else 6)

    model, tokenizer = steps.run(f"load {args.model}", export.load_source, args.model)
    config = model.config
    max_length = min(
        args.max_length or config.max_position_embeddings, config.max_position_embeddings
    )
    steps.run("save tokenizer files", export.save_tokenizer, tokenizer, out)
    special = {
        "pad": tokenizer.pad_token_id,
        "unk": tokenizer.unk_token_id,
        "cls": tokenizer.cls_token_id,
        "sep": tokenizer.sep_token_id,
        "mask": tokenizer.mask_token_id,
    }
    manifest = {
        "format": 1,
        "model_name": args.name or Path(args.model.rstrip("/")).name,
        "source": args.model,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "opset": args.opset,
        "inputs": {
            name: {"dtype": "int64", "shape": ["batch", "sequence"]} for name in export.INPUT_NAMES
        },
        "outputs": {
            "log_probs": {
                "dtype": "float32",
                "shape": ["masks", "vocab"],
                "rows": "one per [MASK], row-major over the batch",
            }
        },
        "max_length": max_length,
        "vocab_size": config.vocab_size,
        "architecture": {
            "layers": config.num_hidden_layers,
            "hidden": config.hidden_size,
            "heads": config.num_attention_heads,
        },
        "special_tokens": special,
        "precisions": {},
    }

    # Reference outputs first, so the PyTorch model can be freed before the memory-hungry
    # optimiser and quantiser run (keeps the exporter's peak low enough for a 4 GB Pi).
    sentences = parity.load_sentences()
    # The preparer only needs the tokenizer, so use the one the service will load.
    from tokenizers import Tokenizer

    from fillmask.text import TextPreparer

    preparer = TextPreparer(
        Tokenizer.from_file(str(out / "tokenizer.json")),
        special,
        max_length=min(max_length, 128),
    )
    prepared = [preparer.prepare(s) for s in sentences]
    reference = steps.run(
        f"PyTorch reference on {len(sentences)} parity sentences",
        parity.torch_log_probs,
        model,
        prepared,
    )

    raw = out / "model.raw.onnx"
    steps.run(
        "export ONNX (TorchScript exporter, masked rows only)",
        export.export_graph,
        model,
        special["mask"],
        raw,
        args.opset,
    )
    del model
    export.release_memory()

    fusions = steps.run(
        "optimise (onnxruntime BERT fusions)",
        export.optimize_graph,
        raw,
        out / PRECISION_FILES["fp32"],
        config.num_attention_heads,
        config.hidden_size,
    )
    raw.unlink()
    print(f"      fusions: {fusions}")
    manifest["fusions"] = fusions
    manifest["precisions"]["fp32"] = PRECISION_FILES["fp32"]
    if args.int8:
        steps.run(
            "quantise (dynamic int8, u8s8, a scale per activation row)",
            quantize.quantize_graph,
            out / PRECISION_FILES["fp32"],
            out / PRECISION_FILES["int8"],
        )
        manifest["precisions"]["int8"] = PRECISION_FILES["int8"]

    names = list(manifest["precisions"].values()) + ["tokenizer.json", "vocab.txt"]
    manifest["files"] = {name: file_entry(out / name) for name in names}
    write_manifest(out, manifest)

    def verify():
        fp32 = Predictor(
            out, precision="fp32", max_length=preparer.max_length, verify="none", check_parity=False
        )
        got = parity.onnx_log_probs(fp32, prepared)
        result = {
            "sentences": len(sentences),
            "fp32": parity.compare(reference, got, fp32.exclusion_bias),
        }
        if args.int8:
            int8 = Predictor(
                out,
                precision="int8",
                max_length=preparer.max_length,
                verify="none",
                check_parity=False,
            )
            quant = parity.onnx_log_probs(int8, prepared)
            result["int8_vs_fp32"] = parity.agreement(got, quant, fp32.exclusion_bias)
            result["int8_vs_pytorch"] = {
                "max_abs_diff": float(
                    max(abs(a - b).max() for a, b in zip(reference, quant, strict=True))
                )
            }
        return result

    manifest["parity"] = steps.run("verify parity with PyTorch", verify)
    manifest["export"] = {
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }
    write_manifest(out, manifest)
    return manifest


def report(manifest):
    """Print the parity figures; return the exit status."""
    fp32 = manifest["parity"]["fp32"]
    print(
        f"parity fp32 vs PyTorch: {fp32['masks']} masks, top-{fp32['topk']} identical "
        f"{fp32['topk_identical']}/{fp32['masks']}, max |Δ log-prob| "
        f"{fp32['max_abs_diff']:.2e} (tolerance {parity.TOLERANCE:g})"
    )
    int8 = manifest["parity"].get("int8_vs_fp32")
    if int8:
        print(
            f"int8 vs fp32: top-1 agreement {int8['top1_agreement']:.1%}, top-5 overlap "
            f"{int8['top5_overlap']:.1%} (decide on int8 from these on the real model)"
        )
    print(
        f"peak memory {manifest['export']['peak_rss_mb']} MB, "
        f"{manifest['export']['seconds']} s in all"
    )
    if not fp32["passed"]:
        print("PARITY FAILED: the ONNX model does not reproduce PyTorch", file=sys.stderr)
        return 1
    return 0


def install(work, target):
    """Move the exported files from ``work`` into ``target``, the manifest last.

    A missing or empty ``target`` is replaced by ``work`` in one rename. Otherwise each file is
    replaced in one rename (other files there, say a Hugging Face save_pretrained copy, stay),
    and the manifest comes last: until it does, the old manifest no longer matches the files
    and the service refuses them rather than serving a mix.
    """
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.replace(work, target)
        return
    if not (work / PRECISION_FILES["int8"]).exists():
        (target / PRECISION_FILES["int8"]).unlink(missing_ok=True)  # stale: not in the manifest
    for path in sorted(work.iterdir(), key=lambda p: p.name == MANIFEST):
        os.replace(path, target / path.name)


def main(argv=None):
    """Entry point: exit 0 on success, 1 on parity failure, 2 on a load/export error."""
    args = get_args(argv)
    target = Path(args.output)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Next to the output, so that moving it into place is a rename on the same file system.
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.export-", dir=target.parent))
    # mkdtemp makes it 0700, and it becomes the model directory: give it (and any file a
    # library wrote privately) the modes mkdir and open give under the umask, so that the
    # service's own user (systemd's fillmask, the image's uid 10001) can read an export.
    umask = os.umask(0o22)
    os.umask(umask)
    try:
        work.chmod(0o777 & ~umask)
        manifest = build(args, work)
        for path in work.iterdir():
            path.chmod(0o666 & ~umask)
        status = report(manifest)
        if status != 0:
            print(f"{target} left as it was: a model that failed parity is not installed")
            return status
        install(work, target)
    except export.ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {target}: " + ", ".join(sorted(manifest["files"])) + ", " + MANIFEST)
    return 0


if __name__ == "__main__":
    sys.exit(main())
