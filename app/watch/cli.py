"""``flask watch ...``: alerts, reversing automatic actions, running checks."""

import json

import click
from flask import current_app
from flask.cli import AppGroup

from monitoring import alerts
from monitoring import checks
from monitoring import response
from monitoring import retention
from monitoring import state
from security import events
from storage.db import session
from storage.monitoring import ResponseAction

watch_cli = AppGroup("watch", help="Alerts, automatic responses and checks.")


def _client():
    return state.client_for(current_app.config)


@watch_cli.command("alerts")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
def alerts_command(limit):
    """List the latest alerts."""
    for row in alerts.list_(session, limit=limit):
        click.echo(
            f"{row.id:>5}  {row.created_at:%Y-%m-%d %H:%M:%S}  {row.severity:<6}  "
            f"{row.type:<22}  {row.subject:<28}  x{row.occurrences}  {row.message}"
        )


@watch_cli.command("actions")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
def actions_command(limit):
    """List the latest automatic and admin actions."""
    for row in response.list_actions(session, limit=limit):
        state_text = f"reversed by {row.reversed_by}" if row.reversed_at else "active"
        click.echo(
            f"{row.id:>5}  alert={row.alert_id}  {row.action:<17}  "
            f"{row.target or '-':<20}  {state_text}"
        )


@watch_cli.command("reverse")
@click.argument("action_id", type=int)
@click.option("--by", default="cli", show_default=True, help="Who reverses it.")
def reverse_command(action_id, by):
    """Reverse the automatic action ACTION_ID (lift, restore, switch off)."""
    row = session.get(ResponseAction, action_id)
    if row is None:
        raise click.ClickException(f"no action {action_id}")
    try:
        response.reverse(session, _client(), row, by=by)
    except response.ResponseError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"reversed action={row.id} {row.action} {row.target or ''}".rstrip())


@watch_cli.command("blocks")
def blocks_command():
    """List the blocked addresses and the seconds each block has left."""
    for address, seconds in sorted(state.blocks(_client()).items()):
        click.echo(f"{address}  {seconds}s")


@watch_cli.command("check")
def check_command():
    """Run one anomaly check now, in this process."""
    from tasks import alerts as alert_hook

    summary = checks.run_check(
        session, _client(), current_app.config, notify=alert_hook.notify
    )
    click.echo(json.dumps(summary))


@watch_cli.command("refit")
def refit_command():
    """Fit the anomaly detector on the recent baseline now."""
    click.echo(json.dumps(checks.run_refit(session, current_app.config)))


@watch_cli.command("retention")
def retention_command():
    """Delete what is past its retention period now."""
    click.echo(json.dumps(retention.run(session, current_app.config)))


@watch_cli.command("unban")
@click.argument("identity")
@click.option("--by", default="cli", show_default=True, help="Who lifts it.")
def unban_command(identity, by):
    """Lift the rate-limit ban of IDENTITY (addr:<address> or key:<prefix>)."""
    if not current_app.extensions["ban_store"].lift(identity):
        raise click.ClickException(f"{identity} is not banned")
    events.record(session, "ban_lifted", details={"identity": identity, "by": by})
    click.echo(f"lifted ban {identity}")
