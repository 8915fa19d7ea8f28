"""``shikaku-server``: run the central server with uvicorn."""

from __future__ import annotations

import ipaddress
import logging

import click
import uvicorn

from shikaku_server.config import get_settings
from shikaku_server.logging_setup import configure, log_config


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=int,
    help="processes; more than one needs SHIKAKU_REDIS_URL (shared challenges and cache)",
)
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="apply migrations before serving")
def main(host: str, port: int, workers: int, migrate: bool) -> None:
    settings = get_settings()
    configure(settings.log_level)
    if workers > 1 and not settings.redis_url:
        raise click.UsageError("--workers > 1 needs SHIKAKU_REDIS_URL: challenges and cache must be shared")
    if not settings.metrics_token and not is_loopback(host):
        logging.getLogger("shikaku_server").warning(
            "/metrics is open to anyone who can reach this address: SHIKAKU_METRICS_TOKEN is not set "
            "(set it, or keep /metrics off the network at the reverse proxy)"
        )
    if migrate:
        from shikaku_server.migrate import upgrade

        upgrade(settings.database_url)
    uvicorn.run(
        "shikaku_server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=log_config(settings.log_level),  # applied in every worker process too
        access_log=False,
    )
