"""``flask keys ...``: manage API keys from the command line."""

from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup

from app.keys import service
from security import events
from security.roles import ROLES
from storage.db import session
from storage.models import utcnow

keys_cli = AppGroup("keys", help="Create, list, rotate and revoke API keys.")


def _audit(kind, row, **details):
    events.record(
        session,
        kind,
        key_prefix=row.prefix,
        endpoint="cli",
        severity="info",
        details={"by": "cli", "role": row.role, **details},
    )


def _lookup(prefix):
    row = service.get_by_prefix(session, prefix=prefix)
    if row is None:
        raise click.ClickException(f"no key with prefix {prefix}")
    return row


@keys_cli.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option("--role", type=click.Choice(ROLES), default="operator", show_default=True)
@click.option(
    "--expires-in-days",
    type=click.IntRange(1, 3650),
    default=None,
    help="Refuse the key after this many days (default: never).",
)
def create_command(name, role, expires_in_days):
    """Create a key and print it; it is shown only this once."""
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    row, key = service.create(
        session,
        name=name,
        role=role,
        pepper=current_app.config["KEY_PEPPER"],
        expires_at=expires_at,
    )
    _audit("key_created", row)
    click.echo(f"created key prefix={row.prefix} name={row.name} role={row.role}")
    click.echo("store it now; it cannot be shown again:")
    click.echo(key)


@keys_cli.command("list")
def list_command():
    """List keys by prefix; secrets are never shown."""
    for row in service.list_(session):
        expires = row.expires_at.date().isoformat() if row.expires_at else "never"
        grace = ""
        if row.previous_valid_until:
            grace = f"  old-secret-until={row.previous_valid_until.isoformat()}"
        click.echo(
            f"{row.prefix}  {row.role:<8}  {service.state(row):<7}  "
            f"uses={row.use_count}  expires={expires}{grace}  {row.name}"
        )


@keys_cli.command("rotate")
@click.argument("prefix")
@click.option(
    "--grace-seconds",
    type=click.IntRange(min=0),
    default=None,
    help="How long the old secret keeps working (default: KEY_ROTATION_GRACE_SECONDS).",
)
def rotate_command(prefix, grace_seconds):
    """Give the key with PREFIX a new secret and print it."""
    settings = current_app.config
    grace = (
        settings["KEY_ROTATION_GRACE_SECONDS"]
        if grace_seconds is None
        else grace_seconds
    )
    if grace > settings["KEY_MAX_GRACE_SECONDS"]:
        raise click.ClickException(
            f"--grace-seconds is at most {settings['KEY_MAX_GRACE_SECONDS']}"
        )
    row = _lookup(prefix)
    if row.revoked_at is not None:
        raise click.ClickException("a revoked key cannot be rotated; create a new one")

    row, key = service.rotate(
        session, row=row, pepper=settings["KEY_PEPPER"], grace_seconds=grace
    )
    _audit("key_rotated", row, grace_seconds=grace)
    click.echo(f"rotated key prefix={row.prefix}; the old secret works {grace}s more")
    click.echo("store it now; it cannot be shown again:")
    click.echo(key)


@keys_cli.command("revoke")
@click.argument("prefix")
def revoke_command(prefix):
    """Revoke the key with PREFIX at once."""
    row = service.revoke(session, row=_lookup(prefix))
    _audit("key_revoked", row)
    click.echo(f"revoked key prefix={row.prefix}")
