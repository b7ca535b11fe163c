"""Multiple choice: rank given candidate words for the one blank of a text.

Method (pseudo-log-likelihood, PLL): the blank is expanded to the candidate's length n; for each
character i the model sees the text with the candidate written in and only character i masked,
and log P(character i) is read from that row. The candidate's ``log_likelihood`` is the sum of
those n log-probabilities; ``score`` is the softmax of the log-likelihoods over the candidates,
so the scores sum to 1. Sums favour shorter candidates when lengths differ.

Cost: one forward row per candidate character — 4 candidate idioms of 4 characters are 16 rows
— run through ``predictor.log_probs`` (in BATCH_MAX chunks, micro-batched when on).
"""

import logging
from dataclasses import dataclass

import numpy as np

from .errors import FillMaskError
from .text import MASK

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    """One candidate's result."""

    word: str
    score: float  # softmax of the log-likelihoods over the candidates, 0..1
    log_likelihood: float  # pseudo-log-likelihood: sum of log P(char | the rest)
    sequence: str  # the text with the blank replaced by this candidate


def rows_needed(texts, candidates):
    """Forward rows ``score`` runs: one per character of every candidate, for every text."""
    return texts * sum(len(word) for word in candidates)


def candidate_ids(predictor, candidates):
    """Token ids of each candidate's characters, or a 400 naming the first unknown one."""
    out = [tuple(predictor.token_id(char) for char in word) for word in candidates]
    for word, ids in zip(candidates, out, strict=True):
        if None in ids:
            raise FillMaskError(
                f"candidate {word!r}: the character {word[ids.index(None)]!r} is not a single "
                "token of the model's vocabulary; candidates must be written in characters "
                "from vocab.txt",
                code="invalid_candidates",
            )
    return out


def blank_span(item, field="text"):
    """(start, end) in the text of its one blank, or a 400 ``invalid_blank``."""
    blanks = item.blanks
    if len(blanks) != 1:
        raise FillMaskError(
            f"{field} has {len(blanks)} separate blanks; candidates need exactly one blank: "
            "one [MASK] or a run of adjacent masks such as [MASK][MASK]",
            code="invalid_blank",
        )
    return item.spans[blanks[0][0]][0], item.spans[blanks[0][-1]][1]


def score(predictor, prepared, candidates, fields):
    """Rank ``candidates`` for each text: a list (per text) of ``Choice`` lists, best first."""
    ids = candidate_ids(predictor, candidates)
    spans = [blank_span(item, f) for item, f in zip(prepared, fields, strict=True)]
    if not ids:  # with hanzi_only, every candidate may have been left out
        return [[] for _ in prepared]
    windows = [
        window
        for item, span, f in zip(prepared, spans, fields, strict=True)
        for word_ids in ids
        for window in _variants(predictor, item, span, word_ids, f)
    ]
    logger.debug(
        "choices: %d candidates x %d texts, %d model rows",
        len(candidates),
        len(prepared),
        len(windows),
    )
    rows = iter(predictor.log_probs(windows))
    per_text = []
    for item, (start, end) in zip(prepared, spans, strict=True):
        # Rows come back in window order: text, then candidate, then masked character.
        lls = np.array([sum(float(next(rows)[0][t]) for t in word_ids) for word_ids in ids])
        probs = np.exp(lls - lls.max())
        probs /= probs.sum()
        per_text.append(
            [
                Choice(
                    word=candidates[k],
                    score=float(probs[k]),
                    log_likelihood=float(lls[k]),
                    sequence=item.text[:start] + candidates[k] + item.text[end:],
                )
                for k in np.argsort(-lls, kind="stable")
            ]
        )
    return per_text


def _variants(predictor, item, span, word_ids, field):
    """One window per character of the candidate: that character masked, the others written."""
    start, end = span
    expanded = predictor.prepare(item.text[:start] + MASK * len(word_ids) + item.text[end:], field)
    return [
        expanded.with_tokens({j: t for j, t in enumerate(word_ids) if j != i})
        for i in range(len(word_ids))
    ]
