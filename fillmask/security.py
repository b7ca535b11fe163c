"""Security on every response: headers, CORS per allowed origin, and the optional API token.

``init_app(app, config)`` registers it. CORS is closed unless ``CORS_ORIGINS`` names origins;
the bearer token (``API_TOKEN``) guards only the JSON API, never the page, /health, /static or
the OpenAPI document, so a monitor and a browser still work on a locked-down Pi.
"""

import hmac
import logging

from flask import current_app, jsonify, request

logger = logging.getLogger(__name__)

# No inline script or style anywhere: the page loads static/ files only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Endpoints (blueprint.function) that need the bearer token when API_TOKEN is set.
PROTECTED_ENDPOINTS = frozenset({"api.predict", "api.fill_mask", "v2.infer"})
PREFLIGHT_MAX_AGE = "600"


def init_app(app, config):
    """Register the checks and headers for ``config`` on ``app``."""
    # Never debug mode, even with FLASK_DEBUG set: its pages show code and run a console.
    app.debug = False
    app.config["PROPAGATE_EXCEPTIONS"] = False
    origins = config.allowed_origins
    token = config.api_token.encode("utf-8") if config.api_token else None

    @app.before_request
    def guard():
        """Answer CORS preflights, then refuse API calls without the right token."""
        if is_preflight():
            return preflight(origins)
        if token is not None and request.endpoint in PROTECTED_ENDPOINTS:
            return check_token(token)
        return None

    @app.after_request
    def add_headers(response):
        """Security headers everywhere; CORS headers for an allowed origin."""
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        allow = allowed_origin(origins)
        if allow:
            response.headers["Access-Control-Allow-Origin"] = allow
        if origins:
            # Caches must not hand one origin's answer to another.
            response.vary.add("Origin")
        return response


def is_preflight():
    """A browser's CORS preflight: OPTIONS with Origin and Access-Control-Request-Method."""
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def allowed_origin(origins):
    """The value for Access-Control-Allow-Origin, or None when the origin is not allowed."""
    origin = request.headers.get("Origin")
    if not origin or not origins:
        return None
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def preflight(origins):
    """204 with the allowed methods and headers, or 403 for an origin not in CORS_ORIGINS."""
    if allowed_origin(origins) is None:
        return error(
            "this origin may not call the API from a browser; the server's "
            "CORS_ORIGINS setting lists the origins that may",
            "origin_not_allowed",
            403,
        )
    response = current_app.response_class(status=204)
    del response.headers["Content-Type"]
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
    response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response


def check_token(token):
    """None when the request carries ``Authorization: Bearer <token>``, else a 401."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    # Constant-time comparison: response times must not reveal how much of it matched.
    if given and hmac.compare_digest(header_bytes(given), token):
        return None
    wrong = "the API token is wrong; send the server's API_TOKEN as"
    missing = "this server requires an API token: send the header"
    response = error(
        f"{wrong if given else missing} 'Authorization: Bearer <token>'", "unauthorized", 401
    )
    challenge = ', error="invalid_token"' if given else ""
    response.headers["WWW-Authenticate"] = 'Bearer realm="fillmask"' + challenge
    return response


def header_bytes(value):
    """The bytes a client sent for a header value.

    WSGI hands header values over decoded as latin-1 (PEP 3333), so encoding back to latin-1
    gives the exact bytes; a UTF-8 token such as "令牌" then compares equal to its UTF-8 bytes.
    """
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # not from a real WSGI server (a test client passing str)
        return value.encode("utf-8")


def error(message, code, status):
    """A JSON error response in the service's usual shape."""
    response = jsonify({"success": False, "error": message, "code": code})
    response.status_code = status
    return response
