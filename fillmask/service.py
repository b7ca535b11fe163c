"""The fill service: the one object that owns the work of every protocol's requests.

Built by ``create_app``. It holds the predictors (one per model of MODEL_DIR, each with its own
micro-batcher, handed over when the predictor is built), the cache of finished bodies, the
limits and whole-word decoding. A protocol parses its body into a ``FillRequest``, calls
``answer`` (or ``fill``) and formats the ``FillResult``; nothing here knows HTTP.
"""

import json
import logging
import os
from dataclasses import dataclass

from . import choices, drain, idioms, joint, limits, metrics
from .batcher import MicroBatcher
from .cache import LRUCache
from .config import ConfigError, check_vocabulary
from .errors import FillMaskError, ModelFilesError, ModelNotReady
from .model_files import REFUSED_ENV
from .requests import Shapes
from .runner import UnbatchedRunner
from .text import is_hanzi
from .watchdog import RunWatch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextAnswer:
    """One text's answer: per-mask candidates, and what whole-word decoding was asked for."""

    masks: list  # per mask, its ``Candidate`` list
    blanks: tuple | None = None  # joint: ``Blank`` per run of adjacent masks
    choices: list | None = None  # candidates: ``Choice`` list, best first
    idioms: list | None = None  # idioms: ``Idiom`` list, best first


@dataclass(frozen=True)
class FillResult:
    """The answer to one ``FillRequest``: the model that gave it and one ``TextAnswer`` per text."""

    model: str
    precision: str
    texts: list


class FillService:
    """Predictors by model name, the cache, the limits: ``fill(request) -> FillResult``."""

    def __init__(self, config):
        self.config = config
        self.shapes = Shapes(config)
        self.cache = LRUCache(config.cache_size, config.cache_bytes)
        self.models = {}  # model name -> Predictor, in MODEL_DIR's order (the first: default)
        self.failed = {}  # directory name -> why its model did not load (its requests: 503)
        self.error = None  # set when the whole worker may no longer answer (a hung run)
        self._lexicon = None

    @property
    def predictor(self):
        """The default model's predictor (None before it is loaded)."""
        return next(iter(self.models.values()), None)

    def load(self, on_hung=None, strict=False):
        """Build every model's predictor; one that fails leaves a reason (503s), unless strict."""
        from .predictor import Predictor
        from .session import return_freed_memory

        cfg = self.config
        watch = RunWatch(cfg.hung_run_seconds, on_hung or (lambda age: None))
        return_freed_memory()  # before the sessions are built: parsed copies go back to the OS
        refused = json.loads(os.environ.get(REFUSED_ENV) or "{}")  # by the Gunicorn master
        for directory in cfg.model_dirs:
            try:
                if directory in refused:
                    raise ModelFilesError(refused[directory])
                predictor = Predictor(
                    directory,
                    precision=cfg.model_precision,
                    max_length=cfg.max_length,
                    threads=cfg.ort_threads,
                    max_masks=cfg.max_masks,
                    verify=cfg.model_verify,
                    batch_max=cfg.batch_max,
                    runner=lambda p: self.runner(p, watch),
                    shared=cfg.share_weights,
                    cache_dir=cfg.weights_cache_dir,
                )
                check_vocabulary(cfg, int((~predictor.excluded).sum()))
                if predictor.name in self.models:
                    raise ConfigError(
                        f"MODEL_DIR names two directories of the model {predictor.name!r} "
                        f"({self.models[predictor.name].directory}, {directory}); one per name"
                    )
            except (ModelFilesError, FillMaskError, ConfigError) as exc:
                if strict:
                    raise
                self.failed[directory.rstrip("/").rsplit("/", 1)[-1]] = str(exc)
                continue
            # One run before the first request: onnxruntime allocates its buffers on the first
            # run, so the first user does not pay for it.
            predictor.run([predictor.prepare("[MASK]")])
            self.models[predictor.name] = predictor
            metrics.MODEL_INFO.labels(predictor.name, predictor.precision).set(1)
            on = "on" if cfg.batching else "off"
            args = predictor.name, predictor.precision, directory, cfg.ort_threads, on
            logger.info("model %s (%s) loaded from %s, %d ORT thread(s), batching %s", *args)
        return self

    def runner(self, predictor, watch):
        """The model's runner: every run timed (metrics, hung-run watch), batched when on."""
        cfg = self.config
        run = watch.track(metrics.observe_runs(predictor.run, predictor.name))
        # Either way a request waits for its rows at most until its deadline (JSON 504).
        if cfg.batching:
            batcher = MicroBatcher(
                run, cfg.batch_max, cfg.batch_window_ms, timeout=cfg.request_timeout
            )
            return batcher.submit
        return UnbatchedRunner(run, timeout=cfg.request_timeout).submit

    # -- readiness ----------------------------------------------------------------------------
    def status(self):
        """The one readiness check: ok | degraded (a model failed, others serve) | loading |
        error | draining; the first two are ready."""
        if drain.draining():
            return "draining"
        if self.error or (self.failed and not self.models):
            return "error"
        if not self.models:
            return "loading"
        return "degraded" if self.failed else "ok"

    def ready(self, name=None):
        """The predictor serving ``name`` (None: the default), or the 503 / 404 saying why not."""
        if self.error is not None:
            raise ModelNotReady(self.error, code="model_unavailable")
        if name in self.models or (name is None and self.models):
            return self.models[name] if name is not None else self.predictor
        if name is None and not self.failed:
            raise ModelNotReady()  # still loading
        served = ", ".join(map(repr, self.models)) or "none yet"
        if name is not None and not self.failed:
            raise FillMaskError(f"unknown model {name!r}; served: {served}", code="unknown_model")
        # With a failed model, an unknown name may be the one that failed: its name is unknown.
        the = "the model" if name is None else f"the model {name!r}"
        known = name is None or name in self.failed
        why = "failed to load" if known else f"is not loaded (served: {served})"
        raise ModelNotReady(f"{the} {why}; see the server log", code="model_unavailable")

    # -- one request --------------------------------------------------------------------------
    def answer(self, request, shape, *extra):
        """``shape(request, result, *extra)`` (the response body, bytes), from the cache if there.

        The key is the whole request (model included), the shape and ``extra``: each
        protocol's body is cached in its own form, so a hit costs no formatting.
        """
        self.ready(request.model)
        key = (shape.__qualname__, request, *extra)
        body = self.cache.get(key)
        if body is None:
            body = shape(request, self.fill(request), *extra)
            self.cache.put(key, body)
        return body

    def fill(self, request):
        """Every check first, then the model: candidates per mask and the whole words asked."""
        p, cfg = self.ready(request.model), self.config
        lexicon = self.lexicon() if request.idioms else None
        idiom = lexicon.longest if lexicon is not None else 0
        limits.check_answer_size(request, cfg, p.token_bytes, idiom)
        items = [
            p.prepare(t, n, request.blank)
            for t, n in zip(request.texts, request.names, strict=True)
        ]
        targets = p.target_ids(request.targets, request.hanzi_only) if request.targets else None
        words = request.candidates  # with hanzi_only, those written in ideographs only
        words = tuple(filter(is_hanzi, words)) if request.hanzi_only else words
        self.check_rows(p, items, request, words, lexicon)
        rows = p.log_probs(items)
        hanzi, names, k, beam = request.hanzi_only, request.names, request.top_k, cfg.joint_beam
        masks = [p.candidates(it, r, k, targets, hanzi) for it, r in zip(items, rows, strict=True)]
        none = [None] * len(items)  # what was not asked for
        blanks = joint.decode(p, items, k, beam, hanzi) if request.joint else none
        ranked = choices.score(p, items, words, names) if request.candidates else none
        found = none
        if lexicon is not None:
            found = [
                idioms.fit(p, it, k, lexicon, beam, n) for it, n in zip(items, names, strict=True)
            ]
        answers = map(TextAnswer, masks, blanks, ranked, found)
        return FillResult(p.name, p.precision, list(answers))

    def check_rows(self, p, items, request, words, lexicon):
        """Refuse bad candidates, a text without its one blank, or too many model rows."""
        rows = 0
        if request.candidates:
            choices.candidate_ids(p, words)
            for item, name in zip(items, request.names, strict=True):
                choices.blank_span(item, name)
            rows += choices.rows_needed(len(items), words)
        if request.joint:
            rows += joint.rows_needed(items, self.config.joint_beam)
        if lexicon is not None:
            rows += sum(
                idioms.rows_needed(item, request.top_k, lexicon, self.config.joint_beam, name)
                for item, name in zip(items, request.names, strict=True)
            )
        limit = self.config.max_whole_word_rows
        if rows > limit:
            raise FillMaskError(
                f"joint, candidates and idioms for these texts need {rows} model rows; at most "
                f"{limit} per request (MAX_WHOLE_WORD_ROWS): send fewer texts or shorter "
                "candidate lists",
                code="batch_too_large",
            )

    def lexicon(self):
        """The idiom lexicon, read once per worker on first use (a 400 without the package)."""
        if self._lexicon is None:
            self._lexicon = idioms.Lexicon.load()
        return self._lexicon
