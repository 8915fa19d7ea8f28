from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed import xmlif_server as t


@pytest.fixture
def central() -> Iterator[t.ContractHttpServer]:
    with t.ContractHttpServer(t.InMemoryServer.with_samples(delay=0.01)) as fake:
        yield fake
