"""Joint decoding of whole-word blanks: a run of adjacent masks is filled as one word.

Independent per-mask top-k pairs characters that never belong together (天 + 气 for "天气"
and "气" + "候" for "气候" give "天候"). Here each blank is decoded like this, all blanks of all
texts in parallel:

1. every beam state (some masks of the blank filled by token ids, the rest still [MASK]) is one
   window; the windows of all states of all blanks go to the model together (one ``infer`` call
   per step while they fit in one chunk);
2. each state fills the open position the model is most confident about (highest top
   probability after excluding special, [unused] and ## tokens) with its best tokens;
3. the expanded states are ranked by joint probability, the product of the conditional
   probabilities chosen along the way, and the best ``beam`` are kept.

A blank of n masks costs n steps and 1 + (n - 1) * beam forward rows. The last step expands each
state by ``top_k`` tokens so a blank gets up to ``top_k`` distinct words. Masks outside the blank
stay [MASK] while it is decoded, as they do in the per-mask output.
"""

import logging
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Word:
    """One whole filling of one blank."""

    word: str
    token_ids: tuple
    score: float  # joint probability 0..1 along the decode path
    sequence: str  # the text with this blank filled, other masks kept


@dataclass(frozen=True)
class Blank:
    """One run of adjacent masks and its best whole-word fillings."""

    index: int
    masks: tuple  # indexes into the text's masks
    words: tuple


@dataclass
class _Search:
    """The beam of one blank while it is decoded."""

    item: object  # the text's Prepared
    masks: tuple
    states: list = field(default_factory=lambda: [(0.0, {})])  # (log prob, {mask: token id})
    words: tuple = ()


def rows_needed(prepared, beam):
    """Upper bound of the forward rows ``decode`` runs for these texts."""
    return sum(1 + beam * (len(masks) - 1) for item in prepared for masks in item.blanks)


def decode(predictor, prepared, top_k, beam, hanzi_only=False):
    """Blanks of every text: a list (per text) of ``Blank`` lists, in text order.

    ``beam``: states kept per blank between steps (JOINT_BEAM), the cost/quality knob.
    """
    bias = predictor.bias(hanzi_only)
    searches = [[_Search(item, masks) for masks in item.blanks] for item in prepared]
    flat = [s for per_text in searches for s in per_text]
    rows_run = 0
    for step in range(max(len(s.masks) for s in flat)):
        active = [s for s in flat if step < len(s.masks)]
        windows = [s.item.with_tokens(fills) for s in active for _, fills in s.states]
        rows_run += len(windows)
        rows = iter(predictor.log_probs(windows))
        for search in active:
            expanded = []
            last = step == len(search.masks) - 1
            for log_p, fills in search.states:
                expanded.extend(
                    _expand(bias, search, log_p, fills, next(rows), top_k if last else beam)
                )
            if last:
                search.words = _words(predictor, search, expanded, top_k)
            else:
                search.states = prune(expanded, beam)
    logger.debug("joint: %d blanks decoded with %d model rows", len(flat), rows_run)
    return [
        [Blank(index=i, masks=s.masks, words=s.words) for i, s in enumerate(per_text)]
        for per_text in searches
    ]


def _expand(bias, search, log_p, fills, rows, width):
    """Fill the state's most confident open position with its ``width`` best tokens."""
    # The model returns one row per mask still open, in text order; this blank's open ones:
    open_masks = [m for m in range(search.item.num_masks) if m not in fills]
    scored = {m: rows[r] + bias for r, m in enumerate(open_masks) if m in search.masks}
    # Most confident first: the position whose best token is likeliest is decided first, so
    # the harder positions are predicted with more of the word already in place.
    position = max(scored, key=lambda m: float(scored[m].max()))
    row = scored[position]
    width = min(width, int(np.isfinite(row).sum()))
    top = np.argpartition(-row, width - 1)[:width]
    top = top[np.argsort(-row[top], kind="stable")]
    return [(log_p + float(row[t]), {**fills, position: int(t)}) for t in top]


def prune(states, keep):
    """The ``keep`` best distinct states (two orders of filling can reach the same state).

    A state is a tuple (log prob, {position: token id}, ...), ranked by its log prob and told
    apart by its fills; the idioms' search (``fillmask.idioms``) keeps its fills' rows in it too.
    """
    best = {}
    for state in states:
        key = frozenset(state[1].items())
        if key not in best or state[0] > best[key][0]:
            best[key] = state
    return sorted(best.values(), key=lambda s: -s[0])[:keep]


def _words(predictor, search, states, top_k):
    """Complete states → up to ``top_k`` distinct words, best first.

    Distinct by the word's string, not its token ids: "1" + "20" and "12" + "0" both write
    "120", and a word is offered once, at the score of its likeliest spelling.
    """
    words, seen = [], set()
    for log_p, fills in sorted(states, key=lambda s: -s[0]):
        ids = tuple(fills[m] for m in search.masks)
        pieces = [predictor.words[t] for t in ids]
        word = "".join(pieces)
        if word in seen:
            continue
        seen.add(word)
        by_mask = dict(zip(search.masks, pieces, strict=True))
        sequence = search.item.fill([by_mask.get(m) for m in range(search.item.num_masks)])
        words.append(Word(word, ids, float(np.exp(log_p)), sequence))
        if len(words) == top_k:
            break
    return tuple(words)
