"""Response shapes: predictor candidates → the JSON bodies of /predict and /fill-mask."""


def candidate_record(candidate):
    """One candidate as /predict returns it (the seed's fields plus score and token_id)."""
    return {
        "word": candidate.word,
        "probability": round(candidate.score * 100, 2),
        "score": candidate.score,
        "token_id": candidate.token_id,
        "sequence": candidate.sequence,
    }


def blank_record(blank):
    """One joint blank: its masks and its whole-word fillings, best first."""
    return {
        "index": blank.index,
        "masks": list(blank.masks),
        "words": [
            {
                "word": w.word,
                "score": w.score,
                "probability": round(w.score * 100, 2),
                "sequence": w.sequence,
            }
            for w in blank.words
        ],
    }


def choice_record(choice):
    """One ranked candidate of a multiple-choice request."""
    return {
        "word": choice.word,
        "score": choice.score,
        "probability": round(choice.score * 100, 2),
        "log_likelihood": choice.log_likelihood,
        "sequence": choice.sequence,
    }


def text_result(masks, extra=(None, None)):
    """One text's answer: ``result`` (first mask, the seed's contract), every mask, and the
    ``blanks`` / ``choices`` keys when ``joint`` / ``candidates`` asked for them."""
    records = [[candidate_record(c) for c in mask] for mask in masks]
    out = {
        "result": records[0],
        "masks": [{"index": i, "candidates": r} for i, r in enumerate(records)],
    }
    blanks, choices = extra
    if blanks is not None:
        out["blanks"] = [blank_record(b) for b in blanks]
    if choices is not None:
        out["choices"] = [choice_record(c) for c in choices]
    return out


def predict_body(request, per_text, meta, extras=None):
    """The /predict body for a ``text`` or a ``texts`` request."""
    extras = extras or [(None, None)] * len(per_text)
    if request.batch:
        return {
            "success": True,
            "results": [text_result(m, e) for m, e in zip(per_text, extras, strict=True)],
            **meta,
        }
    return {"success": True, **text_result(per_text[0], extras[0]), **meta}


def hf_body(request, per_text):
    """The Hugging Face fill-mask body: a list per mask; a list of those for several masks."""

    def one_text(masks):
        lists = [
            [
                {"score": c.score, "token": c.token_id, "token_str": c.word, "sequence": c.sequence}
                for c in mask
            ]
            for mask in masks
        ]
        return lists[0] if len(lists) == 1 else lists

    answers = [one_text(m) for m in per_text]
    return answers if request.batch else answers[0]
