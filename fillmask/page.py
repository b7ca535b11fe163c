"""The fill-in page: GET / serves templates/index.html, which uses static/ only (no CDN)."""

from flask import Blueprint, current_app, render_template

bp = Blueprint("page", __name__)


@bp.get("/")
def index():
    """The browser page."""
    rt = current_app.extensions["fillmask"]
    return render_template("index.html", config=rt.config)
