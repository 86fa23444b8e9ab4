"""Transport security: trusted proxies, HTTPS forcing and security headers.

The headers are the security design's, set by flask-talisman: nosniff,
frames denied, the referrer and permissions policies, the design's CSP,
and HSTS on HTTPS responses only. Talisman's own HTTPS redirect is not
used: it answers 302, which clients follow with a GET (a POST's body is
lost), and it believes any client's ``X-Forwarded-Proto``. Ours answers
308, which keeps the method and body, and trusts the scheme only as far as
``TRUSTED_PROXY_COUNT`` proxies vouch for it.
"""

import logging

from flask import redirect
from flask import request
from flask_talisman import Talisman
from werkzeug.middleware.proxy_fix import ProxyFix

logger = logging.getLogger(__name__)

# Probes speak plain HTTP to the pod or process, whatever clients use.
HTTPS_EXEMPT_ENDPOINTS = frozenset({"health.health", "health.ready"})

CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self' 'unsafe-inline'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "font-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
}
PERMISSIONS_POLICY = {"geolocation": "()", "microphone": "()", "camera": "()"}
REFERRER_POLICY = "strict-origin-when-cross-origin"


def trust_proxies(app):
    """Believe ``X-Forwarded-*`` from exactly ``TRUSTED_PROXY_COUNT`` proxies.

    With 0 (the default) the forwarded headers are ignored and the client
    address and scheme come from the socket.
    """
    count = int(app.config["TRUSTED_PROXY_COUNT"])
    if count > 0:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=count, x_proto=count, x_host=count, x_port=count
        )


def _redirect_to_https():
    if request.is_secure or request.endpoint in HTTPS_EXEMPT_ENDPOINTS:
        return None

    url = request.url.replace("http://", "https://", 1)
    logger.info("https: redirect method=%s path=%s", request.method, request.path)
    return redirect(url, code=308)


def init_headers(app):
    """Install the security headers and, when set, the HTTPS redirect."""
    if app.config["FORCE_HTTPS"]:
        app.before_request(_redirect_to_https)
    if not app.config["TALISMAN_ENABLED"]:
        return

    Talisman(
        app,
        force_https=False,
        frame_options="DENY",
        content_security_policy=CONTENT_SECURITY_POLICY,
        permissions_policy=PERMISSIONS_POLICY,
        referrer_policy=REFERRER_POLICY,
        strict_transport_security=True,
        strict_transport_security_max_age=app.config["HSTS_MAX_AGE_SECONDS"],
        strict_transport_security_include_subdomains=True,
        strict_transport_security_preload=True,
        session_cookie_secure=True,
        x_content_type_options=True,
        x_xss_protection=True,
    )
