"""Uploads against ``httpx.MockTransport``: streamed body, summary, report from the server's
errors, and every failure mapped to its exit code."""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from hokensha_loader import core
from hokensha_loader.client import UploadClient
from hokensha_loader.commands import load as load_command
from hokensha_loader.core import CHUNK_SIZE, default_report_path, upload_file
from hokensha_loader.errors import FileRefusedError
from hokensha_loader.status_codes import ExitCode
from schemas.identifiers import my_number_in

from .helpers import MY_NUMBER, Result, csv_text, row

Load = Callable[..., Result]
Handler = Callable[[httpx.Request, bytes], httpx.Response]
Serve = Callable[[Handler], "FakeServer"]


class StreamingTransport(httpx.BaseTransport):
    """Like ``httpx.MockTransport`` but hands over the request body unread (MockTransport reads
    it first), so a test sees the chunks as they were sent."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.handler(request)


@dataclass
class FakeServer:
    """Records what reached it; answers with ``handler(request, body)``."""

    handler: Handler
    requests: list[httpx.Request] = field(default_factory=list)
    chunk_sizes: list[int] = field(default_factory=list)
    body: bytes = b""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert isinstance(request.stream, httpx.SyncByteStream)
        assert not isinstance(request.stream, httpx.ByteStream), "the body must be a stream, not bytes"
        parts = []
        for chunk in request.stream:  # as the server would read it: chunk by chunk
            self.chunk_sizes.append(len(chunk))
            parts.append(chunk)
        self.body = b"".join(parts)
        return self.handler(request, self.body)


def answer(**fields: Any) -> Handler:
    body = {"upload_id": "u-1", "accepted": 0, "rejected": 0, "unchanged": 0, "duplicate": False,
            "errors": [], "errors_truncated": False, **fields}
    return lambda _request, _body: httpx.Response(200, json=body)


def problem(status: int, code: str, detail: str, **extra: Any) -> Handler:
    body = {"type": f"urn:shikaku:problem:{code}", "title": code, "status": status, "detail": detail,
            "code": code, **extra}
    return lambda _request, _body: httpx.Response(
        status, content=json.dumps(body).encode(), headers={"Content-Type": "application/problem+json"}
    )


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Serve:
    """Route the CLI's uploads to a fake server."""

    def _serve(handler: Handler) -> FakeServer:
        server = FakeServer(handler)
        monkeypatch.setattr(load_command, "UploadClient",
                            functools.partial(UploadClient, transport=StreamingTransport(server)))
        return server

    return _serve


def good_file(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(*(row(number=str(i)) for i in range(n))), encoding="utf-8")
    return path


def test_upload_sends_the_raw_bytes_with_token_kind_and_type(
    tmp_path: Path, load: Load, serve: Serve
) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(csv_text(row(), row(number="2")).encode("cp932"))  # sent as is, not re-encoded
    server = serve(answer(accepted=2))

    result = load("eligibility", path, "--token", "tok-1", "--server", "http://shikaku.test/")

    assert result.code == ExitCode.OK, result.err
    (request,) = server.requests
    assert request.method == "POST"
    assert request.url.path == "/v1/uploads"
    assert request.url.params["kind"] == "eligibility"
    assert request.url.host == "shikaku.test"
    assert request.headers["Authorization"] == "Bearer tok-1"
    assert request.headers["Content-Type"] == "text/csv"
    assert request.headers["Content-Length"] == str(path.stat().st_size)
    assert server.body == path.read_bytes()
    assert result.out.startswith(
        "eligibility: e.csv loaded, accepted 2, rejected 0, unchanged 0, duplicate: no"
    )
    assert not default_report_path(path).exists()


def test_body_is_streamed_in_chunks(tmp_path: Path, serve: Serve) -> None:
    path = tmp_path / "e.csv"
    rows = [row(number=str(i)) for i in range(4000)]  # ~1 MB: several 256 KiB chunks
    path.write_text(csv_text(*rows), encoding="utf-8")
    server = FakeServer(answer(accepted=4000))

    with UploadClient("http://shikaku.test", "t", transport=StreamingTransport(server)) as client:
        summary = upload_file(path, "eligibility", "csv", client=client,
                              report_path=default_report_path(path))

    assert summary.accepted == 4000
    assert len(server.chunk_sizes) == -(-path.stat().st_size // CHUNK_SIZE) > 2
    assert max(server.chunk_sizes) == CHUNK_SIZE
    assert server.body == path.read_bytes()


def test_settings_come_from_the_environment(
    tmp_path: Path, load: Load, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIKAKU_SERVER_URL", "http://from-env.test:8123")
    monkeypatch.setenv("SHIKAKU_INSURER_TOKEN", "env-token")
    server = serve(answer(accepted=3))

    assert load("eligibility", good_file(tmp_path)).code == ExitCode.OK
    assert str(server.requests[0].url).startswith("http://from-env.test:8123/v1/uploads")
    assert server.requests[0].headers["Authorization"] == "Bearer env-token"

    assert load("eligibility", good_file(tmp_path), "--token", "flag-token").code == ExitCode.OK
    assert server.requests[1].headers["Authorization"] == "Bearer flag-token"


def test_ndjson_is_sent_as_ndjson(tmp_path: Path, load: Load, serve: Serve) -> None:
    path = tmp_path / "e.ndjson"
    path.write_text(json.dumps(row(), ensure_ascii=False) + "\n", encoding="utf-8")
    server = serve(answer(accepted=1))
    assert load("eligibility", path, "--token", "t").code == ExitCode.OK
    assert server.requests[0].headers["Content-Type"] == "application/x-ndjson"


def test_server_rejects_become_the_report_and_exit_1(
    tmp_path: Path, load: Load, serve: Serve
) -> None:
    path = good_file(tmp_path)
    errors = [
        {"line": 3, "field": "sex", "code": "invalid_code", "message": "sex '4' is not one of 1, 2, 3"},
        {"line": 4, "field": None, "code": "unknown_person", "message": "no such person for a change row"},
    ]
    serve(answer(accepted=1, rejected=2, errors=errors))

    result = load("eligibility", path, "--token", "t")

    assert result.code == ExitCode.ROWS_REJECTED
    assert "accepted 1, rejected 2" in result.out
    raw = default_report_path(path).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    report = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert report == [
        {"line": "3", "field": "sex", "code": "invalid_code", "message": "sex '4' is not one of 1, 2, 3"},
        {"line": "4", "field": "", "code": "unknown_person", "message": "no such person for a change row"},
    ]
    assert f"reject report: {default_report_path(path)}" in result.out


def test_truncated_server_errors_are_said(tmp_path: Path, load: Load, serve: Serve) -> None:
    errors = [{"line": 2, "field": "sex", "code": "invalid_code", "message": "bad"}]
    serve(answer(rejected=3, errors=errors, errors_truncated=True))
    result = load("eligibility", good_file(tmp_path), "--token", "t")
    assert result.code == ExitCode.ROWS_REJECTED
    assert "only the first errors" in result.out


def test_duplicate_file_is_ok_and_says_so(tmp_path: Path, load: Load, serve: Serve) -> None:
    serve(answer(duplicate=True))
    result = load("eligibility", good_file(tmp_path), "--token", "t")
    assert result.code == ExitCode.OK
    assert "duplicate: yes (nothing changed)" in result.out


@pytest.mark.parametrize(
    ("handler", "code", "message"),
    [
        (problem(401, "unauthorized", "Missing or invalid token"), ExitCode.SERVER_ERROR,
         "refused the token"),
        (problem(422, "unknown_column", "unknown column(s) 'colour'", line=1), ExitCode.FILE_REFUSED,
         "refused the file (line 1): unknown column(s) 'colour'"),
        (problem(422, "empty_file", "the file is empty"), ExitCode.FILE_REFUSED, "the file is empty"),
        (problem(500, "internal_error", "an unexpected error occurred"), ExitCode.SERVER_ERROR,
         "answered 500"),
        (problem(503, "unavailable", "database down"), ExitCode.SERVER_ERROR, "database down"),
        (lambda _r, _b: httpx.Response(502, text="<html>bad gateway</html>"), ExitCode.SERVER_ERROR,
         "answered 502"),
        (lambda _r, _b: httpx.Response(200, json={"hello": "world"}), ExitCode.SERVER_ERROR,
         "not an upload result"),
    ],
)
def test_server_failures_map_to_exit_codes(
    tmp_path: Path, load: Load, serve: Serve, handler: Handler, code: ExitCode,
    message: str,
) -> None:
    serve(handler)
    result = load("eligibility", good_file(tmp_path), "--token", "t")
    assert result.code == code
    assert message in result.err
    assert result.err.count("\n") == 1, "one clear line, no traceback"


def test_network_failure_exits_3(tmp_path: Path, load: Load, serve: Serve) -> None:
    def refuse(request: httpx.Request, _body: bytes) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    serve(refuse)
    result = load("eligibility", good_file(tmp_path), "--token", "t")
    assert result.code == ExitCode.SERVER_ERROR
    assert "cannot reach the server" in result.err


def test_timeout_exits_3(tmp_path: Path, load: Load, serve: Serve) -> None:
    def slow(request: httpx.Request, _body: bytes) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    serve(slow)
    result = load("eligibility", good_file(tmp_path), "--token", "t")
    assert result.code == ExitCode.SERVER_ERROR
    assert "did not answer in time" in result.err


def test_my_number_column_is_never_sent(tmp_path: Path, load: Load, serve: Serve) -> None:
    path = tmp_path / "e.csv"
    header = "action,insurer_number,symbol,number,branch,個人番号"
    path.write_text(f"{header}\nadd,33120015,1,2,00,{MY_NUMBER}\n", encoding="utf-8")
    server = serve(answer())
    result = load("eligibility", path, "--token", "t")
    assert result.code == ExitCode.FILE_REFUSED
    assert server.requests == [], "refused locally: not one byte left the insurer"


def test_empty_file_is_refused_before_sending(
    tmp_path: Path, load: Load, serve: Serve
) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(b"")
    server = serve(answer())
    assert load("eligibility", path, "--token", "t").code == ExitCode.FILE_REFUSED
    assert server.requests == []


def test_refused_upload_leaves_no_report(tmp_path: Path, serve: Serve) -> None:
    path = good_file(tmp_path)
    server = FakeServer(problem(422, "my_number_detected", "a My Number was found", line=3))
    with (UploadClient("http://x.test", "t", transport=StreamingTransport(server)) as client,
          pytest.raises(FileRefusedError) as refused):
        upload_file(path, "eligibility", "csv", client=client, report_path=default_report_path(path))
    assert refused.value.code == "my_number_detected"
    assert refused.value.line == 3
    assert not default_report_path(path).exists()


def test_file_is_read_once_in_constant_size_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve: Serve, load: Load
) -> None:
    reads: list[int] = []
    real = core.read_chunks

    def spy(path: Path, size: int = CHUNK_SIZE) -> Iterator[bytes]:
        for chunk in real(path, size):
            reads.append(len(chunk))
            yield chunk

    monkeypatch.setattr(core, "read_chunks", spy)
    path = tmp_path / "e.csv"
    path.write_text(csv_text(*(row(number=str(i)) for i in range(3000))), encoding="utf-8")
    serve(answer(accepted=3000))
    assert load("eligibility", path, "--token", "t").code == ExitCode.OK
    assert max(reads) <= CHUNK_SIZE


def test_an_echoing_server_never_gets_its_my_number_printed_or_reported(
    tmp_path: Path, load: Load, serve: Serve
) -> None:
    """Defence in depth: a server (an old one, another implementation) that echoes a value in a
    reject or a refusal: the loader withholds such a message in its output and its report."""
    path = tmp_path / "e.csv"
    path.write_text(csv_text(row(number="1"), row(number="2")), encoding="utf-8")
    errors = [{"line": 3, "field": "birth_date", "code": "invalid_date", "message": "birth_date '1234.5678.9018' bad"},
              {"line": 2, "field": MY_NUMBER, "code": "unknown_column", "message": "no such column"}]
    serve(answer(accepted=0, rejected=2, errors=errors))
    result = load("eligibility", path, "--token", "t", "--server", "http://shikaku.test/")
    report = default_report_path(path)
    text = result.out + result.err + report.read_text("utf-8-sig")
    assert "invalid_date" in text and "withheld" in text
    assert "1234.5678.9018" not in text and not my_number_in(text)
    serve(problem(422, "validation_error", f"column {MY_NUMBER} is not known"))
    result = load("eligibility", path, "--token", "t", "--server", "http://shikaku.test/")
    assert result.code != 0 and not my_number_in(result.out + result.err)
