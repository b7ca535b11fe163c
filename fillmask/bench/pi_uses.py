"""Which model for which use on a Pi, from the estimate table (so: estimated too)."""

# Response-time limits of Nielsen's "Response Times: The 3 Important Limits" (nngroup.com):
# 0.1 s feels instantaneous (suggestions while typing), 1 s keeps the user's flow (on Enter).
LIVE_MS = 100
ENTER_MS = 1000
CLASS = 30  # students, each page asking about once a second while its student types
IDIOM_CHARS = 4


def _per_use(row, board, tokens, batch, beam):
    """(live ms, 成语 ms, requests/s at full batches) of one table row on ``board``."""
    gflop, mb = row["gflop"].get(tokens, row["gflop"].get(str(tokens))), row["weight_mb"]
    compute = gflop / board[f"{row['precision']}_gflops"] * 1000
    memory = mb / 1000 / board["gbps"] * 1000
    # Whole words: one step per character, each a session.run reading the weights once, and
    # 1 + beam × (n - 1) sequence rows in all (fillmask/joint.py rows_needed).
    rows = 1 + beam * (IDIOM_CHARS - 1)
    idiom = IDIOM_CHARS * memory + rows * compute
    # A full micro-batch reads the weights once for all its texts.
    rps = batch / (batch * compute + memory) * 1000
    return compute + memory, idiom, rps


def recommendations(pi, tokens=32):
    """One line per use, for the Pi 4 and the Pi 5: the largest model that fits, estimated."""
    from fillmask.config import Config

    config = Config()
    batch, beam = config.batch_max, config.joint_beam
    size = {}
    for row in pi["rows"]:
        size[row["shape"]] = max(size.get(row["shape"], 0), row["weight_mb"])
    lines = [
        f'Per use, from the same estimates at {tokens} tokens (a short sentence); "largest" '
        "is the shape with the most weights among those that fit (fp32 before int8), the one "
        "most likely to answer well. Within the estimate's error a value near its limit may "
        "land on either side: measure on the Pi before relying on it (`bench.py --model`, "
        "step 6).",
        "",
    ]
    uses = [
        (
            f"**Live typing** (a suggestion within {LIVE_MS} ms, which feels instantaneous)",
            lambda live, idiom, rps: live <= LIVE_MS,
            lambda live, idiom, rps: f"{live:.0f} ms",
        ),
        (
            f"**成语 with whole words** (a {IDIOM_CHARS}-character blank decoded jointly: "
            f"{IDIOM_CHARS} runs, {1 + beam * (IDIOM_CHARS - 1)} rows with JOINT_BEAM={beam}; "
            f"within {ENTER_MS / 1000:g} s of Enter)",
            lambda live, idiom, rps: idiom <= ENTER_MS,
            lambda live, idiom, rps: f"{idiom:.0f} ms",
        ),
        (
            f"**A class of {CLASS}** ({CLASS} requests/s, every page asking once a second, served "
            f"in micro-batches of BATCH_MAX={batch})",
            lambda live, idiom, rps: rps >= CLASS,
            lambda live, idiom, rps: f"{rps:.0f} requests/s",
        ),
    ]
    for title, fits, shown in uses:
        cells = []
        for key in ("pi4", "pi5"):
            board = pi["boards"][key]
            scored = [(row, _per_use(row, board, tokens, batch, beam)) for row in pi["rows"]]
            ok = [(row, v) for row, v in scored if fits(*v)]
            if not ok:
                best = min(scored, key=lambda rv: rv[1][0])
                cells.append(
                    f"{board['name'].split(' (')[0]}: none fits; fastest "
                    f"{best[0]['shape']} {best[0]['precision']}, {shown(*best[1])}"
                )
                continue
            # Largest shape first (its fp32 weights), and fp32 before int8 within a shape.
            row, v = max(ok, key=lambda rv: (size[rv[0]["shape"]], rv[0]["precision"] == "fp32"))
            cells.append(
                f"{board['name'].split(' (')[0]}: {row['shape']} ({row['models']}) "
                f"{row['precision']}, estimated {shown(*v)}"
            )
        lines.append(f"- {title}: " + "; ".join(cells) + ".")
    return lines
