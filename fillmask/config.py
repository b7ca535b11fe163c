"""Service configuration: read once from the environment, with defaults, then passed down.

Every knob has an environment variable of the same name in upper case (``model_dir`` ←
``MODEL_DIR``); the README's configuration table lists them all.
"""

import os
from dataclasses import dataclass, field, fields, replace


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
    max_body_bytes: int = 1 << 20  # 1 MiB; larger bodies get 413
    cache_size: int = 256  # LRU of recent identical requests; 0 turns it off
    batching: bool = True  # micro-batch concurrent requests in one worker
    batch_max: int = 16  # texts per micro-batch
    batch_window_ms: float = 5.0  # busy worker: wait for the last batch's clients
    model_verify: str = "size"  # none | size | sha256 (per worker; master: sha256)
    cors_origins: str = ""  # comma-separated origins allowed to call the API
    api_token: str = ""  # when set, the JSON API needs "Authorization: Bearer"
    strict: bool = False  # raise at start when the model cannot load
    metrics: str = "auto"  # who may read /metrics: auto | on | token | off
    metrics_dir: str = ""  # workers' shared metrics files; empty: a fresh temporary directory
    drain_seconds: float = 0.0  # after SIGTERM: keep serving, but not ready, for this long

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
    def allowed_origins(self):
        return {o.strip() for o in self.cors_origins.split(",") if o.strip()}


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
        raise ValueError(f"{name.upper()}={raw!r} is not a valid {kind}") from None
