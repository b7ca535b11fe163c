"""The fill-in page: GET / serves templates/index.html, which uses static/ only (no CDN)."""

from flask import Blueprint, current_app, render_template

bp = Blueprint("page", __name__)


@bp.get("/")
def index():
    """The browser page, given what it shows: the limits and the served models.

    ``models``: names in MODEL_DIR's order (the first is the default); ``fast``: the one with the
    fewest weight bytes, which the page asks while the user types.
    """
    service = current_app.extensions["fillmask"]
    limits = {"max_masks": service.config.max_masks, "max_top_k": service.config.max_top_k}
    models = service.models
    fast = min(models, key=lambda name: models[name].weight_bytes, default=None)
    return render_template("index.html", limits=limits, models=list(models), fast=fast)
