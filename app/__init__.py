"""The Flask application factory."""

import click
from flask import Flask
from flask import request

import config
from app import auth
from app import limits
from app.errors import register_error_handlers
from app.queueing import init_celery
from app.watch import hooks as watch_hooks
from monitoring import logs
from monitoring import requestlog
from monitoring import state
from security import headers
from security import keycache
from storage import db


def create_app(test_config=None):
    """Build the API app: defaults, then ``AICRISISALERT_*``, then ``test_config``."""
    app = Flask(__name__)
    app.config.from_object(
        config.TestingConfig if test_config else config.DefaultConfig
    )
    app.config.from_prefixed_env(prefix=config.ENV_PREFIX, loads=config._loads)
    if test_config:
        app.config.update(test_config)
    config.check(app.config)
    app.json.sort_keys = False
    logs.configure(level=app.config["LOG_LEVEL"], fmt=logs.log_format(app.config))

    config.VAR_DIR.mkdir(exist_ok=True)
    db.init_engine(
        app.config["DATABASE_URL"],
        busy_timeout_seconds=app.config["SQLITE_BUSY_TIMEOUT_SECONDS"],
        synchronous=app.config["SQLITE_SYNCHRONOUS"],
    )
    requestlog.configure(flush_seconds=app.config["REQUESTLOG_FLUSH_SECONDS"])
    keycache.install(
        db.session,
        ttl_seconds=app.config["KEY_CACHE_SECONDS"],
        redis_client=lambda: state.client_for(app.config),
    )
    init_celery(app)

    from app.docs.views import bp as docs_bp
    from app.health.views import bp as health_bp
    from app.jobs.views import bp as jobs_bp
    from app.keys.cli import keys_cli
    from app.keys.views import bp as keys_bp
    from app.model.views import bp as model_bp
    from app.watch.cli import watch_cli
    from app.watch.views import bp as watch_bp
    from app.webhooks.views import bp as webhooks_bp

    app.register_blueprint(docs_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(jobs_bp)
    app.register_blueprint(keys_bp)
    app.register_blueprint(model_bp)
    app.register_blueprint(watch_bp)
    app.register_blueprint(webhooks_bp)
    app.cli.add_command(keys_cli)
    app.cli.add_command(watch_cli)
    app.cli.add_command(init_db_command)
    register_error_handlers(app)
    auth.check_routes(app)
    # First: the request id and the blocklist come before authentication.
    watch_hooks.init_app(app)
    _install_guards(app)

    @app.teardown_appcontext
    def _remove_session(_exception):
        db.session.remove()

    return app


def _install_guards(app):
    """Register the per-request checks, in the order they must run.

    HTTPS redirect, then the limiter's check (:func:`app.limits.check_request`:
    a banned address or key is refused, the key is identified, the request
    is counted by key, or by address when there is none), and only then is
    a missing, bad or underprivileged key refused.
    """
    headers.trust_proxies(app)
    headers.init_headers(app)
    limits.init_limiter(app)

    @app.before_request
    def _identify():
        # Only the batch endpoint takes a bigger body than a single submit.
        request.max_content_length = app.config[
            "BATCH_MAX_BODY_BYTES"
            if request.endpoint == limits.BATCH_ENDPOINT
            else "MAX_BODY_BYTES"
        ]
        if auth.is_public(request.endpoint):
            return
        limits.check_request(app)

    @app.before_request
    def _authorise():
        auth.authorise()


@click.command("init-db")
def init_db_command():
    """Create the database tables that do not exist yet."""
    db.create_all()
    click.echo("database ready")
