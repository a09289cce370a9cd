"""`comfyfleet alerts test RECEIVER`: send a test notification to one receiver, straight from
this process, with the same receiver settings the balancer takes, and say how it went."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer

from comfyfleet.alerts.config import AlertsConfig, Receiver
from comfyfleet.alerts.model import AlertState, Notice, Notification
from comfyfleet.alerts.send import Outcome, Sender
from comfyfleet.cli import options as opt
from comfyfleet.cli.app import app
from comfyfleet.errors import ComfyfleetError

alerts_app = typer.Typer(help="Try the alert receivers.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


def sample_notification(receiver: str, now_ms: int) -> Notification:
    """A firing `AlertTest` alert, marked as a test in its labels."""
    alert = AlertState(
        labels={"alertname": "AlertTest", "severity": "info", "test": "true"},
        summary="comfyfleet test notification: this receiver works",
        value=0.0,
        status="firing",
        since_ms=now_ms,
        fired_ms=now_ms,
        notified_ms=now_ms,
    )
    nid = f"alrt_test_{now_ms}"
    return Notification(nid, receiver, "AlertTest", now_ms, (Notice(alert, "firing"),))


async def _send(cfg: AlertsConfig, receiver: Receiver, webhook_secret: str | None) -> Outcome:
    sender = Sender(timeout_ms=cfg.timeout_ms, external_url=cfg.external_url,
                    webhook_secret=webhook_secret)  # fmt: skip
    now = time.time_ns() // 1_000_000
    try:
        return await sender.send(sample_notification(receiver.name, now), receiver, now)
    finally:
        await sender.close()


@alerts_app.command("test")
def send_test(
    receiver: Annotated[str, typer.Argument(help="Receiver name (a flag's receiver: its kind).")],
    alerts_config: opt.AlertsConfigFile = None,
    alert_receiver: opt.AlertReceiver = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            "--webhook-secret",
            envvar="BALANCER_WEBHOOK_SECRET",
            help="Signs the generic webhook receiver (whsec_...).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Send a test alert to RECEIVER; exit 1 when it was not accepted."""
    from comfyfleet.alerts.loading import alerts_config as load_alerts

    try:
        cfg = load_alerts(alerts_config, alert_receiver or [])
    except ComfyfleetError as exc:
        typer.echo(f"comfyfleet alerts: {exc.detail}", err=True)
        raise typer.Exit(code=2) from None
    found = cfg.receiver(receiver)
    if found is None:
        names = ", ".join(r.name for r in cfg.receivers) or "none configured"
        typer.echo(f"comfyfleet alerts: no receiver {receiver!r} (receivers: {names})", err=True)
        raise typer.Exit(code=2)
    outcome = asyncio.run(_send(cfg, found, webhook_secret))
    if not outcome.ok:
        typer.echo(f"{receiver} ({found.kind}): not delivered: {outcome.error}", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"{receiver} ({found.kind}): delivered")
