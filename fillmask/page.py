"""The fill-in page: GET / serves templates/index.html, which uses static/ only (no CDN)."""

from flask import Blueprint, current_app, render_template

bp = Blueprint("page", __name__)


@bp.get("/")
def index():
    """The browser page, given what it shows: the limits and the served models."""
    service = current_app.extensions["fillmask"]
    cfg = service.config
    limits = {"max_masks": cfg.max_masks, "max_top_k": cfg.max_top_k}
    return render_template("index.html", limits=limits, models=list(service.models))
