"""``flask keys ...``: manage API keys from the command line."""

import click
from flask import current_app
from flask.cli import AppGroup

from app.keys import service
from security.roles import ROLES
from storage.db import session

keys_cli = AppGroup("keys", help="Create, list and revoke API keys.")


@keys_cli.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option("--role", type=click.Choice(ROLES), default="operator", show_default=True)
def create_command(name, role):
    """Create a key and print it; it is shown only this once."""
    row, key = service.create(
        session, name=name, role=role, pepper=current_app.config["KEY_PEPPER"]
    )
    click.echo(f"created key prefix={row.prefix} name={row.name} role={row.role}")
    click.echo("store it now; it cannot be shown again:")
    click.echo(key)


@keys_cli.command("list")
def list_command():
    """List keys by prefix; secrets are never shown."""
    for row in service.list_(session):
        state = "revoked" if row.revoked_at else "active"
        click.echo(
            f"{row.prefix}  {row.role:<8}  {state:<7}  uses={row.use_count}  {row.name}"
        )


@keys_cli.command("revoke")
@click.argument("prefix")
def revoke_command(prefix):
    """Revoke the key with PREFIX at once."""
    row = service.get_by_prefix(session, prefix=prefix)
    if row is None:
        raise click.ClickException(f"no key with prefix {prefix}")
    service.revoke(session, row=row)
    click.echo(f"revoked key prefix={row.prefix}")
