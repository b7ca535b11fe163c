"""The Raspberry Pi rates the estimate uses, each with the public measurement it comes from.

Nothing here is measured by this project: these are other people's published figures, cited
so that each can be checked, and the published Pi 4 latencies the method is checked against.
"""

# Each rate with the public measurement it comes from. fp32 GEMM = 2 × HPL's fp64 GFLOP/s (the
# same NEON units do 4 fp32 lanes where they do 2 fp64 ones); bandwidth = bytes read + written
# per second in a streaming copy (STREAM's and tinymembench's convention: copy × 2).
BOARDS = {
    "pi4": {
        "name": "Raspberry Pi 4B (4× Cortex-A72)",
        "fp32_gflops": 2 * 11.889,
        "int8_gflops": 2 * 11.889,  # no dot-product: int8 saves bytes, not arithmetic
        "gbps": 5.53,
        "sources": [
            "fp32 GEMM 23.8 GFLOP/s = 2 × HPL 11.889 GFLOP/s fp64 on a Pi 4 at 1.8 GHz "
            "(geerlingguy/top500-benchmark README, issue #13); consistent with ncnn's Pi 4 "
            "resnet50 fp32 at 4 threads, 335 ms for ~8.2 GFLOP = 24.5 GFLOP/s "
            "(Tencent/ncnn benchmark/README.md)",
            "memory 5.53 GB/s = STREAM Copy 5527 MB/s on a Pi 4 (sci-pi.org.uk/bench/stream.html); "
            "tinymembench C copy 2777 MB/s × 2 on a Pi 4 (geerlingguy/sbc-reviews #110) agrees",
            "int8 at the fp32 rate: without the dot-product instruction quantised 8-bit gives "
            "'only reduced memory bandwidth' (ARM-software/armnn#382; google/XNNPACK#6653: "
            "without dot product int8 is slow). ncnn's hand-written A72 int8 kernels do better "
            "(its Pi 4 resnet50 int8 236 ms against 335 ms fp32), so for int8 the arithmetic "
            "term may be pessimistic",
        ],
    },
    "pi5": {
        "name": "Raspberry Pi 5 (4× Cortex-A76, dot-product)",
        "fp32_gflops": 2 * 30.249,
        "int8_gflops": 1.5 * 2 * 30.249,
        "gbps": 2 * 6.296,
        "sources": [
            "fp32 GEMM 60.5 GFLOP/s = 2 × HPL 30.249 GFLOP/s fp64 on a Pi 5 at 2.4 GHz "
            "(geerlingguy/top500-benchmark README, issue #18)",
            "memory 12.6 GB/s = tinymembench C copy backwards 6296 MB/s × 2 on a Pi 5 "
            "(geerlingguy/sbc-reviews #21)",
            "int8 at 1.5 × fp32: 'on armv8.2-a we see a speedup of about 1.5x for qasymm8 due "
            "to the use of the dot product instruction' (ARM-software/ComputeLibrary#855)",
        ],
    },
}

# Published ONNX Runtime latencies on a Raspberry Pi 4 of encoders whose shapes are known; the
# source gives no token count, so the check is made at 16, 32 and 64 tokens (the note says so).
PUBLISHED = {
    "source": "shodh-memory.com/blog/embedding-models-edge-devices (ONNX Runtime via the Rust "
    "ort crate, Raspberry Pi 4, one embedding; token count and precision not stated)",
    "models": [
        # name, layers, hidden, intermediate, measured ms (encoder only: no MLM head)
        ("all-mpnet-base-v2 (12×768)", 12, 768, 3072, 340.0),
        ("all-MiniLM-L12-v2 (12×384)", 12, 384, 1536, 71.0),
        ("all-MiniLM-L6-v2 (6×384)", 6, 384, 1536, 34.0),
    ],
}
