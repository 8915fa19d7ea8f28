"""``Transactions``, the async services' one way to the blocking session, on both backends: a
unit of work is committed before ``run`` returns, rolled back whole when it raises, and a
``read`` commits nothing; the work runs off the event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from shikaku_server.database import ThreadedTransactions
from shikaku_server.eligibility.models import Insured


def _add(session: Session, number: str) -> int:
    row = Insured(
        insurer_number="01130012", symbol="1", number=number, branch="00", symbol_norm="1", number_norm=number
    )
    session.add(row)
    session.flush()
    return row.id


def _numbers(session_factory: Any) -> list[str]:
    with session_factory() as s:
        return list(s.execute(sa.text("SELECT number FROM insured ORDER BY number")).scalars())


def test_run_commits_before_it_returns(session_factory: Any) -> None:
    transactions = ThreadedTransactions(session_factory)
    loop_thread: list[int] = []

    async def scenario() -> int:
        loop_thread.append(threading.get_ident())
        return await transactions.run(lambda s: (_add(s, "1"), threading.get_ident())[1])

    worker = asyncio.run(scenario())
    assert worker != loop_thread[0]  # not on the event loop
    assert _numbers(session_factory) == ["1"]  # another session sees it: committed


def test_a_unit_that_raises_leaves_nothing(session_factory: Any) -> None:
    transactions = ThreadedTransactions(session_factory)

    def failing(session: Session) -> None:
        _add(session, "2")
        raise LookupError("after the write")

    with pytest.raises(LookupError):
        asyncio.run(transactions.run(failing))
    assert _numbers(session_factory) == []


def test_read_commits_nothing(session_factory: Any) -> None:
    transactions = ThreadedTransactions(session_factory)
    assert asyncio.run(transactions.read(lambda s: _add(s, "3"))) > 0
    assert _numbers(session_factory) == []
