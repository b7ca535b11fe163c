"""Who may read /metrics, and the directory the Gunicorn workers share their metrics through.

The master calls ``prepare_dir`` before it forks any worker. This module does not import
prometheus_client at load: the library picks its in-process or multiprocess value class once,
when it is first imported, so the worker must see ``PROMETHEUS_MULTIPROC_DIR`` before that.
"""

import glob
import os
import shutil
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"


def access_mode(config):
    """``on`` (anyone), ``token`` (API_TOKEN as a bearer token) or ``off`` (404) for ``config``.

    ``auto`` follows API_TOKEN: the request counts reveal traffic, so a server whose API needs
    a token wants its metrics behind it too. ``Config``'s pattern already refused any other value.
    """
    mode = config.metrics.strip().lower()
    if mode == "auto":
        return "token" if config.api_token else "on"
    if mode == "token" and not config.api_token:
        raise ValueError("METRICS=token needs API_TOKEN: the token /metrics readers send")
    return mode


def prepare_dir(config):
    """Create or empty the shared directory and export it; return it (None with METRICS=off).

    METRICS_DIR if set, else a fresh temporary directory. Files of an earlier run are deleted:
    their counters would otherwise be added to this run's.
    """
    if access_mode(config) == "off":
        return None
    path = config.metrics_dir or tempfile.mkdtemp(prefix="fillmask-metrics-")
    try:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
        tempfile.TemporaryFile(dir=path).close()  # every worker writes its files here
    except OSError as exc:  # one line in the master, not a traceback from every worker
        raise ValueError(f"METRICS_DIR={path} cannot be used: {exc.strerror or exc}") from None
    os.environ[ENV] = path
    return path


def mark_dead(pid):
    """Drop a dead worker's live gauges (its counters and histograms stay in the totals)."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def remove_dir(config, path):
    """Delete the directory at exit when it was a temporary one made by ``prepare_dir``."""
    if path and not config.metrics_dir:
        shutil.rmtree(path, ignore_errors=True)
