"""Which database errors are a backing service that cannot serve now (503), and which are bugs
(500): by class, and for other DBAPI errors by SQLSTATE (a failover, a full disk, a shutdown)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy.exc

from shikaku_server.problems import backing_service_failed, error_response


class _PgError(Exception):
    def __init__(self, pgcode: str) -> None:
        super().__init__("server said no")
        self.pgcode = pgcode


def _wrapped(pgcode: str) -> sqlalchemy.exc.DBAPIError:
    return sqlalchemy.exc.InternalError("INSERT …", None, _PgError(pgcode))


@pytest.mark.parametrize(
    "pgcode",
    [
        "25006",  # read-only transaction: the primary's address reached a replica mid-failover
        "57P01",  # admin shutdown
        "57P03",  # cannot connect now (starting up)
        "53100",  # disk full
        "53300",  # too many connections
        "08006",  # connection failure
        "58030",  # I/O error
        "40P01",  # deadlock detected: nothing was applied, a retry goes through
        "40001",  # serialization failure
    ],
)
def test_errors_of_a_database_that_cannot_serve_now_are_503(pgcode: str) -> None:
    for exc in (_wrapped(pgcode), _PgError(pgcode)):
        assert backing_service_failed(exc)
        response = error_response(exc)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert json.loads(bytes(response.body))["code"] == "unavailable"


@pytest.mark.parametrize("pgcode", ["23505", "42P01", "22P02", "23503"])
def test_other_database_errors_are_not_called_an_outage(pgcode: str) -> None:
    exc = _wrapped(pgcode)
    assert not backing_service_failed(exc)
    assert error_response(exc).status_code == 500


def test_an_error_without_a_sqlstate_is_not_an_outage() -> None:
    assert not backing_service_failed(ValueError("bug"))
    assert not backing_service_failed(sqlalchemy.exc.InternalError("x", None, ValueError("no pgcode")))
