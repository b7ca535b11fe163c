"""The predictor: one ONNX session, the tokenizer, and top-k over the masked rows.

Knows nothing of HTTP. Everything that can be computed once (id→word table, the excluded-token
bias, session options) is computed at load; per request there is tokenisation, one
``session.run`` and a top-k per mask.
"""

from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from . import deadline, limits
from .errors import FillMaskError, ModelFilesError
from .model_files import open_model_dir
from .session import create_session
from .text import TextPreparer, is_hanzi

# bert-base-chinese's ids 104 and 105: placeholders from pre-training, never real text.
PLACEHOLDERS = {"<S>", "<T>"}


@dataclass(frozen=True)
class Candidate:
    """One filling of one mask."""

    word: str
    token_id: int
    score: float  # probability 0..1 over the whole vocabulary
    sequence: str  # the original text with this mask filled, other masks kept


def excluded_ids(words):
    """Bool array: ids never offered as candidates (special, [unusedN], <S>/<T>, ## pieces)."""
    # "[...]" covers the special tokens and [unusedN] alike; an empty or blank word is a hole.
    return np.array([never_offered(word) for word in words], dtype=bool)


def never_offered(word):
    """Whether one vocabulary word is never offered (see ``excluded_ids``)."""
    return (
        (word.startswith("[") and word.endswith("]"))
        or word.startswith("##")
        or word in PLACEHOLDERS
        or not word.strip()
    )


def hanzi_ids(words):
    """Bool array: tokens written in CJK ideographs only (``hanzi_only`` keeps just these)."""
    return np.array([is_hanzi(w) for w in words], dtype=bool)


class Predictor(TextPreparer):
    """Fill-mask inference for one exported model at one precision.

    A ``TextPreparer`` on the model's tokenizer and limits (``prepare``), plus the session.
    ``runner(run)`` (the micro-batcher, or an unbatched runner) is given when the predictor is
    built and wraps its one hot call; every model run goes through ``log_probs``.
    """

    def __init__(
        self,
        model_dir,
        *,
        precision="fp32",
        max_length=64,
        threads=1,
        max_masks=16,
        verify="size",
        check_parity=True,
        batch_max=16,
        runner=None,
        shared=False,
        cache_dir="",
    ):
        files = open_model_dir(model_dir, precision, verify=verify, check_parity=check_parity)
        manifest = files.manifest
        self.name = files.name
        self.directory = files.directory
        self.weight_bytes = files.onnx_path.stat().st_size  # what one run reads: the speed order
        # Texts per session.run at most (BATCH_MAX): activation memory grows with the batch, so
        # a request of many texts runs in several runs instead of one big one.
        self.batch_max = max(1, int(batch_max))
        self.precision = precision
        limit = int(manifest.get("max_length", 512))
        if not 3 <= max_length <= limit:
            raise ModelFilesError(
                f"MAX_LENGTH={max_length} is out of range: 3..{limit} for {self.name}"
            )
        # Refusals (onnxruntime cannot load it, no place for the shared copy) are one line.
        self.session = create_session(
            files.onnx_path, threads, shared=shared, cache_dir=cache_dir, verify=verify
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        tokenizer = Tokenizer.from_file(str(files.tokenizer_path))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        special = manifest["special_tokens"]
        self.pad_id = special.get("pad", 0)
        super().__init__(tokenizer, special, max_length, max_masks)
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.words = [""] * max(len(vocab), manifest.get("vocab_size", 0))
        for word, index in vocab.items():
            self.words[index] = word
        self.word_ids = {w: i for i, w in enumerate(self.words) if w}
        self.excluded = excluded_ids(self.words)
        # Added to a log-prob row, these remove excluded ids (and, for hanzi_only, every token
        # that is not all CJK ideographs) from any top-k in one vector op.
        self.exclusion_bias = np.where(self.excluded, -np.inf, 0.0).astype(np.float32)
        self.hanzi = hanzi_ids(self.words) & ~self.excluded
        self.hanzi_bias = np.where(self.hanzi, 0.0, -np.inf).astype(np.float32)
        # The longest offerable token in JSON bytes: the answer size bound's T (fillmask/limits.py).
        self.token_bytes = limits.token_bytes(self.words, self.excluded)
        self.infer = self.run if runner is None else runner(self)

    def bias(self, hanzi_only=False):
        """The row bias of offerable tokens: all of them, or the ideographs only."""
        return self.hanzi_bias if hanzi_only else self.exclusion_bias

    # -- stage 1: text -> windows: ``prepare`` (TextPreparer's) ------------------------------
    def token_id(self, piece):
        """The id of ``piece`` as one offerable vocabulary token (lower-cased), or None."""
        key = piece.strip().lower() if isinstance(piece, str) else None
        index = self.word_ids.get(key) if key else None
        return None if index is None or self.excluded[index] else index

    def target_ids(self, targets, hanzi_only=False):
        """Map ``targets`` (single-token strings) to ids, or raise a 400 naming the bad one.

        With ``hanzi_only``, targets that are not ideographs are left out.
        """
        ids = []
        for target in targets:
            index = self.token_id(target)
            if index is None:
                raise FillMaskError(
                    f"target {target!r} is not a single token of the model's "
                    "vocabulary; targets must be single characters or words "
                    "from vocab.txt",
                    code="invalid_target",
                )
            if index not in ids and (self.hanzi[index] or not hanzi_only):
                ids.append(index)
        return ids

    # -- stage 2: the hot path ----------------------------------------------------------------
    def run(self, prepared):
        """One padded ``session.run`` for a list of ``Prepared``; one [masks, vocab] per text."""
        lengths = np.array([len(p.input_ids) for p in prepared])
        attention = (np.arange(lengths.max()) < lengths[:, None]).astype(np.int64)
        input_ids = np.full(attention.shape, self.pad_id, dtype=np.int64)
        for row, item in enumerate(prepared):
            input_ids[row, : len(item.input_ids)] = item.input_ids
        feeds = {"input_ids": input_ids, "attention_mask": attention}
        (rows,) = self.session.run(None, {k: feeds[k] for k in self.input_names})
        # The model returns the masked rows only, all texts' in order: split them back per text.
        return np.split(rows, np.cumsum([p.num_masks for p in prepared])[:-1])

    def log_probs(self, prepared):
        """Rows of every window, through the runner, at most BATCH_MAX windows per run."""
        out = []
        for start in range(0, len(prepared), self.batch_max):
            deadline.check()  # between runs: a request out of time stops here with a 504
            out.extend(self.infer(prepared[start : start + self.batch_max]))
        return out

    # -- stage 3: rows -> candidates ----------------------------------------------------------
    def candidates(self, item, rows, top_k=5, target_ids=None, hanzi_only=False):
        """Top-k ``Candidate`` lists, one per mask of ``item``, best first."""
        result = []
        bias = self.bias(hanzi_only)
        for index, row in enumerate(rows):
            if target_ids is not None:
                ids = np.asarray(target_ids, dtype=np.int64)
                order = ids[np.argsort(-row[ids], kind="stable")][:top_k]
            else:
                scored = row + bias
                top = np.argpartition(scored, -top_k)[-top_k:]  # no negated copy of the row
                order = top[np.argsort(-scored[top], kind="stable")]
                order = order[np.isfinite(scored[order])]  # fewer ideographs than top_k
            result.append([self._candidate(item, index, row, i) for i in order])
        return result

    def _candidate(self, item, index, row, i):
        """Token ``i`` as the candidate for mask ``index`` of ``item``, scored from its ``row``."""
        word = self.words[i]
        return Candidate(word, int(i), float(np.exp(row[i])), item.fill_one(index, word))
