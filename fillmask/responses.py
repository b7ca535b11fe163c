"""Response shapes: a ``FillResult`` → the JSON bodies of /predict and /fill-mask (bytes).

Bodies are bytes, made once: the cache stores them as they are sent.
"""

import json


def encode(value):
    """The service's JSON: real characters (not \\uXXXX), compact, UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


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


def idiom_record(idiom):
    """One lexicon idiom written into the blank, with what a learner wants to know of it."""
    return {
        "word": idiom.word,
        "fill": idiom.fill,
        "pinyin": idiom.pinyin,
        "explanation": idiom.explanation,
        "derivation": idiom.derivation,
        "score": idiom.score,
        "probability": round(idiom.score * 100, 2),
        "sequence": idiom.sequence,
    }


def text_result(answer):
    """One text's answer: ``result`` (first mask, the seed's contract), every mask, and the
    ``blanks`` / ``choices`` / ``idioms`` keys when asked for."""
    records = [[candidate_record(c) for c in mask] for mask in answer.masks]
    out = {
        "result": records[0],
        "masks": [{"index": i, "candidates": r} for i, r in enumerate(records)],
    }
    if answer.blanks is not None:
        out["blanks"] = [blank_record(b) for b in answer.blanks]
    if answer.choices is not None:
        out["choices"] = [choice_record(c) for c in answer.choices]
    if answer.idioms is not None:
        out["idioms"] = [idiom_record(i) for i in answer.idioms]
    return out


def predict_body(request, result):
    """The /predict body for a ``text`` or a ``texts`` request, without ``elapsed_ms``.

    It ends with ``"precision":…}`` so the view appends ``elapsed_ms`` per response
    (``with_elapsed``): a cached body then still says how long this request took.
    """
    meta = {"model": result.model, "precision": result.precision}
    if request.batch:
        return encode({"success": True, "results": [text_result(t) for t in result.texts], **meta})
    return encode({"success": True, **text_result(result.texts[0]), **meta})


def with_elapsed(body, seconds):
    """``body`` (an object's JSON) with ``"elapsed_ms"`` as its last field."""
    return body[:-1] + b',"elapsed_ms":' + str(round(seconds * 1000, 2)).encode() + b"}"


def hf_body(request, result):
    """The Hugging Face fill-mask body: a list per mask; a list of those for several masks.

    A list of one text answers as one text, as transformers' ``FillMaskPipeline`` does.
    """

    def one_text(answer):
        lists = [
            [
                {"score": c.score, "token": c.token_id, "token_str": c.word, "sequence": c.sequence}
                for c in mask
            ]
            for mask in answer.masks
        ]
        return lists[0] if len(lists) == 1 else lists

    answers = [one_text(t) for t in result.texts]
    return encode(answers if request.batch and len(answers) > 1 else answers[0])
