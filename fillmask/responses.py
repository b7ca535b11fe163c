"""Response shapes: predictor candidates → the JSON bodies of /predict and /fill-mask."""


def candidate_record(candidate):
    """One candidate as /predict returns it (the seed's fields plus score and token_id)."""
    return {"word": candidate.word, "probability": round(candidate.score * 100, 2),
            "score": candidate.score, "token_id": candidate.token_id,
            "sequence": candidate.sequence}


def text_result(masks):
    """One text's answer: ``result`` (first mask, the seed's contract) and every mask."""
    records = [[candidate_record(c) for c in mask] for mask in masks]
    return {"result": records[0],
            "masks": [{"index": i, "candidates": r} for i, r in enumerate(records)]}


def predict_body(request, per_text, meta):
    """The /predict body for a ``text`` or a ``texts`` request."""
    if request.batch:
        return {"success": True, "results": [text_result(m) for m in per_text], **meta}
    return {"success": True, **text_result(per_text[0]), **meta}


def hf_body(request, per_text):
    """The Hugging Face fill-mask body: a list per mask; a list of those for several masks."""
    def one_text(masks):
        lists = [[{"score": c.score, "token": c.token_id, "token_str": c.word,
                   "sequence": c.sequence} for c in mask] for mask in masks]
        return lists[0] if len(lists) == 1 else lists

    answers = [one_text(m) for m in per_text]
    return answers if request.batch else answers[0]
