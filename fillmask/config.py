"""Service configuration: read once from the environment, with defaults, then passed down.

Every knob has an environment variable of the same name in upper case (``model_dir`` ←
``MODEL_DIR``); docs/configuration.md lists them all.
"""

import os
from dataclasses import dataclass, field, fields, replace


class ConfigError(ValueError):
    """A setting out of its accepted range; the message names the variable and the range."""


def default_threads(environ=os.environ):
    """ORT intra-op threads per worker: cores ÷ workers, at least 1."""
    workers = max(1, _int(environ.get("WORKERS"), 2))
    return max(1, (os.cpu_count() or 1) // workers)


@dataclass(frozen=True)
class Config:
    """Everything the app and the predictor need to know, with the defaults users get."""

    model_dir: str = "models/bert-base-chinese"
    model_precision: str = "fp32"  # fp32 | int8
    max_length: int = 64  # tokens the model sees, [CLS] and [SEP] included
    ort_threads: int = field(default_factory=default_threads)
    max_masks: int = 16  # per text
    max_texts: int = 32  # per "texts" batch
    max_top_k: int = 50
    max_targets: int = 100
    max_candidates: int = 20  # words of one "candidates" list
    max_candidate_chars: int = 8  # characters of one candidate word
    # Model rows one request may cost through joint / candidates / idioms (one text needs at most
    # 160 + 76): what one request costs a Raspberry Pi, whatever texts x candidates it sends.
    max_whole_word_rows: int = 256
    joint_beam: int = 5  # states kept per blank between joint decoding steps (rows per step)
    max_body_bytes: int = 1 << 20  # 1 MiB; larger bodies get 413
    # 512: a paragraph, and as many characters as BERT's 512 positions can ever see at once.
    max_text_chars: int = 512
    # Refuse, before any model run, a request whose answer could exceed this many bytes
    # (fillmask/limits.py): what one request can cost a worker in memory.
    max_response_bytes: int = 2_000_000
    cache_size: int = 256  # LRU of recent identical requests; 0 turns it off
    cache_bytes: int = 16 << 20  # 16 MiB: the cache's estimated size bound per worker
    batching: bool = True  # micro-batch concurrent requests in one worker
    batch_max: int = 16  # texts per micro-batch
    batch_window_ms: float = 5.0  # busy worker: wait for the last batch's clients
    model_verify: str = "size"  # none | size | sha256 (per worker; master: sha256)
    cors_origins: str = ""  # comma-separated origins allowed to call the API
    api_token: str = ""  # when set, the JSON API needs "Authorization: Bearer"
    metrics: str = "auto"  # who may read /metrics: auto | on | token | off
    metrics_dir: str = ""  # workers' shared metrics files; empty: a fresh temporary directory
    drain_seconds: float = 0.0  # after SIGTERM: keep serving, but not ready, for this long
    request_timeout: float = 30.0  # seconds; a request still waiting for the model gets a 504
    hung_run_seconds: float = 90.0  # a model run this old: the worker is replaced (0: never)

    def __post_init__(self):
        for name, (check, accepted) in RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) != (accepted == "true or false") or not check(value):
                raise ConfigError(f"{name.upper()}={value!r} is out of range: {accepted}")

    @classmethod
    def from_env(cls, environ=os.environ, **overrides):
        """Build from environment variables named like the fields, upper case."""
        values = {}
        for item in fields(cls):
            raw = environ.get(item.name.upper())
            if raw is None or raw == "":
                continue
            values[item.name] = _convert(raw, item.type, item.name)
        if "ort_threads" not in values:
            values["ort_threads"] = default_threads(environ)
        return replace(cls(**values), **overrides)

    @property
    def model_dirs(self):
        """MODEL_DIR's directories (comma-separated; the first is the default model)."""
        return [d.strip() for d in self.model_dir.split(",") if d.strip()]

    @property
    def allowed_origins(self):
        return {o.strip() for o in self.cors_origins.split(",") if o.strip()}


def _at_least(low):
    return lambda v: isinstance(v, int) and v >= low, f"an integer >= {low}"


def _one_of(*names):
    return lambda v: v in names, "one of " + ", ".join(names)


_IS_BOOL = (lambda v: isinstance(v, bool), "true or false")
_IS_STR = (lambda v: isinstance(v, str), "a string")
# Every setting's accepted values, checked when a Config is built (so at start): a bad value
# stops the start with one line naming the variable instead of failing on a later request.
# MAX_TOP_K is checked against the vocabulary once the model is loaded (``check_vocabulary``).
RANGES = {
    "model_dir": (lambda v: isinstance(v, str) and v.strip() != "", "a directory path"),
    "model_precision": _one_of("fp32", "int8"),
    "max_length": (
        lambda v: isinstance(v, int) and 3 <= v <= 512,
        "an integer from 3 to 512 (BERT's positions)",
    ),
    "ort_threads": _at_least(1),
    "max_masks": _at_least(1),
    "max_texts": _at_least(1),
    "max_top_k": _at_least(1),
    "max_targets": _at_least(1),
    "max_candidates": _at_least(1),
    "max_candidate_chars": _at_least(1),
    "max_whole_word_rows": _at_least(1),
    "joint_beam": _at_least(1),
    "max_body_bytes": _at_least(1024),
    "max_text_chars": _at_least(len("[MASK]")),
    "max_response_bytes": _at_least(10_000),
    "cache_size": _at_least(0),
    "cache_bytes": _at_least(0),
    "batching": _IS_BOOL,
    "batch_max": _at_least(1),
    "batch_window_ms": (
        lambda v: isinstance(v, int | float) and 0 <= v <= 1000,
        "a number of milliseconds from 0 to 1000",
    ),
    "model_verify": _one_of("none", "size", "sha256"),
    "cors_origins": _IS_STR,
    "api_token": _IS_STR,
    "metrics": (
        lambda v: isinstance(v, str) and v.strip().lower() in ("auto", "on", "token", "off"),
        "one of auto, on, token, off",
    ),
    "metrics_dir": _IS_STR,
    "drain_seconds": (
        lambda v: isinstance(v, int | float) and 0 <= v <= 3600,
        "a number of seconds from 0 to 3600",
    ),
    # Also below Gunicorn's TIMEOUT, and HUNG_RUN_SECONDS above it: gunicorn.conf.py checks.
    "request_timeout": (
        lambda v: isinstance(v, int | float) and 0 < v <= 3600,
        "a number of seconds above 0, at most 3600",
    ),
    "hung_run_seconds": (
        lambda v: isinstance(v, int | float) and 0 <= v <= 86400,
        "a number of seconds from 0 (never) to 86400",
    ),
}


def check_vocabulary(config, offerable):
    """Refuse a MAX_TOP_K larger than the model's offerable tokens (known once it is loaded)."""
    if config.max_top_k > offerable:
        raise ConfigError(
            f"MAX_TOP_K={config.max_top_k} is out of range: at most {offerable}, the tokens "
            "this model can offer"
        )


def _int(raw, default):
    try:
        return int(raw)
    except (TypeError, ValueError):
        return default


def _convert(raw, kind, name):
    """Convert one environment string to the field's type, naming the variable on failure."""
    kind = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{name.upper()}={raw!r} is not a valid {kind}") from None
