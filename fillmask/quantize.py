"""The exporter's int8 step: dynamic quantisation whose answers do not depend on the batch.

onnxruntime's ``quantize_dynamic`` quantises each activation with one scale per ``session.run``
(``DynamicQuantizeLinear``, and ``QAttention``'s scalar input scale), taken over the whole
padded batch: a text's answer then changed with the texts it was batched with (issue 19, 7 of
7 tries). Here every activation row (one token's vector) gets its own scale instead, so a row's
int8 result depends only on that row, alone or in any batch. Needs onnx + onnxruntime; only
the exporter imports this module.
"""

import logging

import numpy as np

from .export import ExportError, collecting_cycles

logger = logging.getLogger(__name__)

# Symmetric per-row scale: onnxruntime's CPU MatMulInteger takes only a scalar activation zero
# point (a per-row one fails: "input1 zero point must be a scalar"), so it is 128 for every row.
ZERO_POINT = 128


def quantize_graph(src, dst):
    """Dynamic int8 (signed per-tensor weights, uint8 activations), then per-row activations.

    u8s8 is onnxruntime's fast path on x86 (VNNI, AVX2) and ARM; per-tensor weight scales
    measured as accurate as per-channel here with less work.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a page per tensor it skips (NonZero)
    try:
        with collecting_cycles():
            quantize_dynamic(
                str(src),
                str(dst),
                weight_type=QuantType.QInt8,
                # The fused Attention op has no type info for its weights without this default.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
            model = onnx.load(str(dst))
            per_row_activations(model)
            onnx.save(model, str(dst))
    finally:
        root.setLevel(level)
    return dst


def per_row_activations(model):
    """Rewrite ``model`` in place: every activation quantised with one scale per row.

    ``DynamicQuantizeLinear`` becomes a per-row symmetric ``QuantizeLinear`` (the row's largest
    |value| / 127, zero point 128); its scale output keeps its name, now [..., 1], so the
    quantiser's ``Mul(x_scale, w_scale)`` after each ``MatMulInteger`` applies it row by row
    (onnxruntime fuses that into ``MatMulIntegerToFloat``). ``QAttention`` takes only a scalar
    input scale, so it becomes the same product for Q, K and V plus a float
    ``MultiHeadAttention`` (measured: identical outputs, as fast).
    """
    from onnx import helper
    from onnx.numpy_helper import from_array

    graph = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    constants = {"pr_inv127": np.float32(1 / 127), "pr_last": np.array([-1], np.int64)}
    nodes = []
    for node in graph.node:
        if node.op_type == "DynamicQuantizeLinear":
            nodes += per_row_quantize(helper, node, opset)
            constants[node.output[2]] = np.uint8(ZERO_POINT)
        elif node.op_type == "QAttention":
            nodes += unfused_attention(helper, node, opset)
        else:
            nodes.append(node)
    graph.ClearField("node")
    graph.node.extend(nodes)
    graph.initializer.extend(from_array(np.asarray(v), k) for k, v in constants.items())


def unfused_attention(helper, node, opset):
    """Nodes computing ``QAttention`` from a per-row quantised input.

    One ``MatMulInteger`` for Q, K and V together (onnxruntime fuses it with its scale and bias
    into ``MatMulIntegerToFloat``), split, then ``MultiHeadAttention`` with the same mask.
    """
    x, w, bias, x_scale, w_scale, mask, x_zp, w_zp = node.input[:8]
    heads = {a.name: a.i for a in node.attribute}
    if set(heads) != {"num_heads"} or any(node.input[8:]):
        raise ExportError(f"QAttention {node.name} has options the int8 rewrite lacks")
    out, make = node.output[0], helper.make_node
    qkv = [out + "_q", out + "_k", out + "_v"]
    split = {"num_outputs": 3} if opset >= 18 else {}  # opset 18 wants the count said
    return [
        make("MatMulInteger", [x, w, x_zp, w_zp], [out + "_int"]),
        make("Cast", [out + "_int"], [out + "_float"], to=1),  # 1: FLOAT
        make("Mul", [x_scale, w_scale], [out + "_qkv_scale"]),
        make("Mul", [out + "_float", out + "_qkv_scale"], [out + "_scaled"]),
        make("Add", [out + "_scaled", bias], [out + "_qkv"]),
        make("Split", [out + "_qkv"], qkv, axis=-1, **split),
        make("MultiHeadAttention", [*qkv, "", mask], [out], domain="com.microsoft", **heads),
    ]


def per_row_quantize(helper, node, opset):
    """Nodes computing ``DynamicQuantizeLinear``'s three outputs with a per-row scale.

    The rows are flattened to [rows, features] so that ``QuantizeLinear``'s per-axis form
    (axis 0) quantises each row with its own scale in one pass. Measured on bert-base's shape:
    Abs + ReduceMax a little faster than ReduceMax + ReduceMin, and opset 21's blocked
    ``QuantizeLinear`` (no reshapes) no faster than this.
    """
    x, (q, scale, zero_point) = node.input[0], node.output
    p = q + "_pr_"
    make = helper.make_node
    # Opset 18 moved the reductions' axes from an attribute to an input.
    inputs, axes = ([p + "abs", "pr_last"], {}) if opset >= 18 else ([p + "abs"], {"axes": [-1]})
    return [
        make("Abs", [x], [p + "abs"]),
        make("ReduceMax", inputs, [p + "hi"], keepdims=1, **axes),
        # No guard for an all-zero row (scale 0): its integer product is multiplied by that 0,
        # so its result is exactly 0 whatever it was quantised to; a Max node here cost ~2 %.
        make("Mul", [p + "hi", "pr_inv127"], [scale]),
        make("Reshape", [scale, "pr_last"], [p + "s"]),
        make("Shape", [p + "s"], [p + "rows"]),
        make("Expand", [zero_point, p + "rows"], [p + "zp"]),
        make("Flatten", [x], [p + "x"], axis=-1),
        make("QuantizeLinear", [p + "x", p + "s", p + "zp"], [p + "q"], axis=0),
        make("Shape", [x], [p + "shape"]),
        make("Reshape", [p + "q", p + "shape"], [q]),
    ]
