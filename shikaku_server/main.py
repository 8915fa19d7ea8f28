"""``shikaku-server``: run the central server with uvicorn."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from shikaku_server.install import missing_library, refuse
from shikaku_server.malloc import bound_arenas

try:
    import uvicorn

    # the whole server, imported now: a library of the server extra that is missing is named
    # here, before anything starts, rather than in a worker's traceback
    import shikaku_server.app  # noqa: F401
    from shikaku_server.config import get_settings
    from shikaku_server.logging_setup import configure, log_config
except ModuleNotFoundError as _exc:
    _MISSING: str | None = missing_library(_exc)
else:
    _MISSING = None

# prometheus_client's own variable (read by the library when it is imported, in each worker)
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


@contextlib.contextmanager
def metrics_directory(workers: int) -> Iterator[str | None]:
    """The directory where the workers keep their metrics (``shikaku_server.metrics``), so that a
    scrape answered by any worker counts every worker's requests.

    ``PROMETHEUS_MULTIPROC_DIR`` when set (created if missing, emptied of an earlier run's value
    files, kept afterwards); else, for several workers, a new temporary directory, set in the
    environment the spawned workers inherit and removed when the server stops. One worker and
    no variable: none (values in memory)."""
    given = os.environ.get(METRICS_DIR_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield given
        return
    if workers <= 1:
        yield None
        return
    path = tempfile.mkdtemp(prefix="shikaku-metrics-")
    os.environ[METRICS_DIR_ENV] = path
    logging.getLogger("shikaku_server").info("metrics of the %d workers in %s", workers, path)
    try:
        yield path
    finally:
        os.environ.pop(METRICS_DIR_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


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
    if _MISSING is not None:
        refuse("shikaku-server", _MISSING)
    settings = get_settings()
    configure(settings.log_level)
    bound_arenas()
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
    with metrics_directory(workers):
        uvicorn.run(
            "shikaku_server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=log_config(settings.log_level),  # applied in every worker process too
            access_log=False,
        )
