"""Service configuration: read once from the environment, with defaults, then passed down.

Every knob has an environment variable of the same name in upper case (``model_dir`` ←
``MODEL_DIR``); docs/configuration.md lists them all. Each field declares its default and its
accepted range together (pydantic): a bad value stops the start with one line naming the
variable and what it accepts, instead of failing on a later request. MAX_TOP_K is checked
against the vocabulary once the model is loaded (``check_vocabulary``).
"""

import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

AtLeast1 = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(allow_inf_nan=False)]


class ConfigError(ValueError):
    """A setting out of its accepted range; the message names the variable and the range."""


def default_threads(environ=os.environ):
    """ORT intra-op threads per worker: cores ÷ workers, at least 1."""
    try:
        workers = max(1, int(environ.get("WORKERS", "2")))
    except ValueError:
        workers = 2
    return max(1, (os.cpu_count() or 1) // workers)


class Config(BaseModel):
    """Everything the app and the predictor need to know, with the defaults users get."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # One directory, or several comma-separated (the first is the default model).
    model_dir: str = Field("models/bert-base-chinese", pattern=r"\S")
    model_precision: Literal["fp32", "int8"] = "fp32"
    max_length: int = Field(64, ge=3, le=512)  # tokens the model sees, [CLS] and [SEP] included
    ort_threads: AtLeast1 = Field(default_factory=default_threads)
    max_masks: AtLeast1 = 16  # per text
    max_texts: AtLeast1 = 32  # per "texts" batch
    max_top_k: AtLeast1 = 50
    max_targets: AtLeast1 = 100
    max_candidates: AtLeast1 = 20  # words of one "candidates" list
    max_candidate_chars: AtLeast1 = 8  # characters of one candidate word
    # Model rows one request may cost through joint / candidates / idioms (one text needs at most
    # 160 + 76): what one request costs a Raspberry Pi, whatever texts x candidates it sends.
    max_whole_word_rows: AtLeast1 = 256
    joint_beam: AtLeast1 = 5  # states kept per blank between joint decoding steps (rows per step)
    max_body_bytes: int = Field(1 << 20, ge=1024)  # 1 MiB; larger bodies get 413
    # 512: a paragraph, and as many characters as BERT's 512 positions can ever see at once.
    max_text_chars: int = Field(512, ge=len("[MASK]"))
    # Refuse, before any model run, a request whose answer could exceed this many bytes
    # (fillmask/limits.py): what one request can cost a worker in memory.
    max_response_bytes: int = Field(2_000_000, ge=10_000)
    cache_size: int = Field(256, ge=0)  # LRU of recent identical requests; 0 turns it off
    cache_bytes: int = Field(16 << 20, ge=0)  # 16 MiB: the cache's bound in bytes per worker
    batching: bool = True  # micro-batch concurrent requests in one worker
    batch_max: AtLeast1 = 16  # texts per micro-batch
    batch_window_ms: Seconds = Field(5.0, ge=0, le=1000)  # busy: wait for the last batch's clients
    model_verify: Literal["none", "size", "sha256"] = "size"  # per worker; the master: sha256
    share_weights: bool = True  # workers map one prepacked copy made on this machine
    weights_cache_dir: str = ""  # where it lives; empty: the model dir, else the user's cache
    cors_origins: str = ""  # comma-separated origins allowed to call the API
    api_token: str = ""  # when set, the JSON API needs "Authorization: Bearer"
    metrics: str = Field("auto", pattern=r"(?i)^\s*(auto|on|token|off)\s*$")  # who reads /metrics
    metrics_dir: str = ""  # workers' shared metrics files; empty: a fresh temporary directory
    drain_seconds: Seconds = Field(0.0, ge=0, le=3600)  # after SIGTERM: serve, not ready, this long
    # Also below Gunicorn's TIMEOUT, and HUNG_RUN_SECONDS above it: gunicorn.conf.py checks.
    request_timeout: Seconds = Field(30.0, gt=0, le=3600)  # then a request waiting gets a 504
    hung_run_seconds: Seconds = Field(90.0, ge=0, le=86400)  # a run this old: replace (0: never)

    def __init__(self, **values):
        try:
            super().__init__(**values)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            name = str(error["loc"][0]).upper() if error["loc"] else "a setting"
            why = error["msg"][0].lower() + error["msg"][1:]
            given = error.get("input")
            given = given if str(given).lstrip("-").replace(".", "", 1).isdigit() else repr(given)
            raise ConfigError(f"{name}={given} is out of range: {why}") from None

    @classmethod
    def from_env(cls, environ=os.environ, **overrides):
        """Build from environment variables named like the fields, upper case."""
        values = {n: environ[n.upper()] for n in cls.model_fields if environ.get(n.upper())}
        values.setdefault("ort_threads", default_threads(environ))
        return cls(**{**values, **overrides})

    @property
    def model_dirs(self):
        """MODEL_DIR's directories (comma-separated; the first is the default model)."""
        return [d.strip() for d in self.model_dir.split(",") if d.strip()]

    @property
    def allowed_origins(self):
        return {o.strip() for o in self.cors_origins.split(",") if o.strip()}


def check_vocabulary(config, offerable):
    """Refuse a MAX_TOP_K larger than the model's offerable tokens (known once it is loaded)."""
    if config.max_top_k > offerable:
        raise ConfigError(
            f"MAX_TOP_K={config.max_top_k} is out of range: at most {offerable}, the tokens "
            "this model can offer"
        )
