"""The server's phases after the file is sent (docs/loader.md, "The server's phases"): the loader
asks for the streamed answer, shows each phase with its counts on its own line, and still reads
the plain JSON answer of a server that does not stream."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import shikaku_server.upload.service as service
from hokensha_loader.client import UploadClient
from hokensha_loader.core import default_report_path, upload_file
from hokensha_loader.errors import FileRefusedError, ServerError
from hokensha_loader.progress import BarProgress
from tests.factories import INSURER_A, INSURER_B

from .helpers import csv_text, row
from .test_loader_progress import Clock, FakeTTY, visible

ANSWER = {"upload_id": "u-1", "accepted": 2, "rejected": 0, "unchanged": 0, "duplicate": False,
          "errors": [], "errors_truncated": False}


def streamed(*lines: dict[str, Any]) -> httpx.MockTransport:
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)

    def handler(request: httpx.Request) -> httpx.Response:
        assert "application/x-ndjson" in request.headers["accept"]
        return httpx.Response(200, content=body, headers={"Content-Type": "application/x-ndjson"})

    return httpx.MockTransport(handler)


def send(path: Path, transport: httpx.BaseTransport, progress: BarProgress | None = None) -> Any:
    with UploadClient("http://shikaku.test", "t", transport=transport) as client:
        return upload_file(path, "eligibility", "csv", client=client, report_path=default_report_path(path),
                           progress=progress)


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row(number="1"), row(number="2")), encoding="utf-8")
    return path


def screen(stream: FakeTTY) -> list[str]:
    """The lines as the terminal shows them at the end: each ``\\r`` redraws its line."""
    text = re.sub(r"\x1b\[K", "", visible(stream.getvalue()))
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n") if line.rsplit("\r", 1)[-1]]


def test_each_phase_gets_a_line_with_its_last_counts(small_file: Path) -> None:
    transport = streamed(
        {"phase": "parsing", "read": 0, "applied": 0, "unchanged": 0, "rejected": 0},
        {"phase": "validating", "read": 1, "applied": 0, "unchanged": 0, "rejected": 0},
        {"phase": "validating", "read": 2, "applied": 1, "unchanged": 0, "rejected": 0},
        {"phase": "applying", "read": 2, "applied": 1, "unchanged": 0, "rejected": 0, "total": 2},
        {"phase": "committing", "read": 2, "applied": 2, "unchanged": 0, "rejected": 0, "total": 2,
         "elapsed_s": 12.34},
        {"phase": "done", "result": ANSWER},
    )
    stream, clock = FakeTTY(), Clock()
    summary = send(small_file, transport, BarProgress(stream, small_file.stat().st_size, "eligibility", clock=clock))

    assert summary.accepted == 2
    lines = screen(stream)
    assert lines[0].startswith("eligibility 100% |")
    assert lines[1:] == [
        "サーバー: 解析中（文字コード・見出し行） 0.0 秒",
        "サーバー: 検証中 読込 2 行、処理済み 1 件（不備 0） 0.0 秒",
        f"サーバー: 適用中 1 / 2 件（不備 0）  50% |{'█' * 12}{' ' * 12}| 0.0 秒",
        "サーバー: 確定中（コミット）2 件 12.3 秒",  # the server's own time when it sends it
    ]


def test_english_phases(small_file: Path) -> None:
    transport = streamed({"phase": "validating", "read": 1_234_567, "applied": 10, "unchanged": 2, "rejected": 3},
                         {"phase": "done", "result": ANSWER})
    stream = FakeTTY()
    send(small_file, transport, BarProgress(stream, 10, "eligibility", clock=Clock(), lang="en"))
    assert screen(stream)[-1] == "server: validating: read 1,234,567 rows, 15 processed (3 rejected) 0.0 s"


def test_a_failed_line_is_the_refusal_it_carries(small_file: Path) -> None:
    transport = streamed({"phase": "parsing"}, {"phase": "failed", "problem": {
        "status": 422, "code": "payload_too_large", "detail": "the file is larger than 10 bytes"}})
    with pytest.raises(FileRefusedError) as refused:
        send(small_file, transport)
    assert refused.value.code == "payload_too_large"


def test_a_stream_that_ends_without_its_answer_is_a_server_error(small_file: Path) -> None:
    with pytest.raises(ServerError, match="ended before its result"):
        send(small_file, streamed({"phase": "applying", "total": 2}))


def test_a_server_without_the_stream_answers_plain_json(small_file: Path) -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json=ANSWER))
    stream = FakeTTY()
    summary = send(small_file, transport, BarProgress(stream, 10, "eligibility", clock=Clock()))
    assert summary.accepted == 2
    assert "サーバー" not in stream.getvalue()


def test_the_real_server_shows_its_phases_in_order(
    tmp_path: Path, client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "BATCH", 4)
    path = tmp_path / "e.csv"
    rows = [row(insurer_number=INSURER_A, number=str(i)) for i in range(1, 21)]
    path.write_text(csv_text(*rows, row(insurer_number=INSURER_B, number="99")), encoding="utf-8")
    stream = FakeTTY()

    with UploadClient("http://testserver", tokens["insurer"], http=client) as uploader:
        summary = upload_file(path, "eligibility", "csv", client=uploader, report_path=default_report_path(path),
                              progress=BarProgress(stream, path.stat().st_size, "eligibility", lang="en"))

    assert (summary.accepted, summary.rejected) == (20, 1)
    server = [line for line in screen(stream) if line.startswith("server: ")]
    assert [line.split()[1].rstrip(":") for line in server] == ["parsing", "validating", "applying", "committing"]
    assert "applying: 21 of 21 processed (1 rejected) 100% |" in server[2]
    assert "committing 21 records" in server[3]
