"""Throughput and latency of the XML folder interface vs the JSON path of the same terminal.

Both paths use the same terminal (``XmlTerminal`` + its SQLite state) and the same central server:
an in-memory one behind the real ``ServerClient`` (``httpx.MockTransport``), or ``--http`` for the
same fake on a real socket, or ``--server URL --token T`` for a running server.

- folder, burst: N requests renamed into ``req/`` at once; requests/s until the last answer is in
  ``res/``; per-request latency from the rename to the answer's rename into place (seen by an
  inotify watch on ``res/``, i.e. what clinic software could see);
- folder, one at a time: the same latency with nothing queued (p50/p99);
- JSON path: ``answer_single`` + ``to_json`` + ``json.dumps`` + saving the JSON (what the folder
  path also does), one at a time.

Usage: python bench/xml_bench.py [-n 500] [--encoding shift_jis] [--http | --server URL --token T]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inotify_simple import INotify, flags

from clinic_terminal.client import ServerClient
from clinic_terminal.xmlif.documents import parse_request, to_json
from clinic_terminal.xmlif.model import SingleRequest, XmlEncoding
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import TerminalState
from clinic_terminal.xmlif.watcher import FolderWatcher
from testbed import xmlif_server as t


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(latencies: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in latencies]
    return {
        "p50_ms": round(pct(ms, 0.50), 3),
        "p99_ms": round(pct(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(max(ms), 3),
    }


class ResultObserver:
    """Records when each result file is renamed into ``res/`` (IN_MOVED_TO)."""

    def __init__(self, res: Path) -> None:
        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        self._inotify = INotify()
        self._inotify.add_watch(str(res), flags.MOVED_TO)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for event in self._inotify.read(timeout=50):
                now = time.perf_counter()
                with self.cond:
                    self.arrived[event.name] = now
                    self.cond.notify_all()

    def wait(self, count: int, timeout: float = 120.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.arrived) >= count, timeout):
                raise TimeoutError(f"{len(self.arrived)}/{count} answers after {timeout}s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._inotify.close()


@contextmanager
def server_client(args: argparse.Namespace) -> Iterator[ServerClient]:
    if args.server:
        with ServerClient(args.server, args.token) as client:
            yield client
        return
    fake = t.InMemoryServer.with_samples()
    if args.http:
        with t.ContractHttpServer(fake) as http, ServerClient(http.url, "bench") as client:
            yield client
        return
    with ServerClient("http://fake", "bench", transport=t.contract_transport(fake)) as client:
        yield client


def request_bytes(i: int, encoding: str) -> bytes:
    return t.single(t.FULL_SEARCH if i % 2 else t.SIMPLE_SEARCH, "Shift_JIS" if encoding == "shift_jis" else "UTF-8")


def bench_folder(terminal: XmlTerminal, root: Path, n: int, encoding: XmlEncoding) -> dict[str, Any]:
    watcher = FolderWatcher(root, terminal, encoding=encoding, mode="inotify")
    outbox = root / "outbox"
    outbox.mkdir()
    observer = ResultObserver(root / "res")
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(0.3)
    try:
        # burst: everything at once
        dropped: dict[str, float] = {}
        for i in range(n):
            name = f"OQSsiquc01req_burst{i:06d}.xml"
            (outbox / name).write_bytes(request_bytes(i, encoding))
        start = time.perf_counter()
        for i in range(n):
            name = f"OQSsiquc01req_burst{i:06d}.xml"
            dropped[name.replace("req_", "res_")] = time.perf_counter()
            os.rename(outbox / name, root / "req" / name)
        observer.wait(n)
        elapsed = max(observer.arrived.values()) - start
        burst = [observer.arrived[k] - v for k, v in dropped.items()]
        # one at a time
        single: list[float] = []
        for i in range(n):
            name = f"OQSsiquc01req_one{i:06d}.xml"
            (outbox / name).write_bytes(request_bytes(i, encoding))
            dropped_at = time.perf_counter()
            os.rename(outbox / name, root / "req" / name)
            observer.wait(n + i + 1)
            single.append(observer.arrived[name.replace("req_", "res_")] - dropped_at)
    finally:
        stop.set()
        thread.join()
        observer.close()
    return {
        "burst": {"requests": n, "seconds": round(elapsed, 3), "requests_per_second": round(n / elapsed, 1)}
        | summary(burst),
        "one_at_a_time": {"requests": n, "requests_per_second": round(n / sum(single), 1)} | summary(single),
    }


def bench_json(terminal: XmlTerminal, n: int) -> dict[str, Any]:
    requests = []
    for i in range(n):
        parsed = parse_request("OQSsiquc01req_j.xml", request_bytes(i, "utf-8"))
        assert isinstance(parsed, SingleRequest)
        requests.append(parsed)
    latencies: list[float] = []
    start = time.perf_counter()
    for i, request in enumerate(requests):
        began = time.perf_counter()
        result = terminal.answer_single(f"json{i:06d}", request)
        body = to_json(result)
        terminal.state.save_result(result.file_id, result.kind, body)
        json.dumps(body, ensure_ascii=False)
        latencies.append(time.perf_counter() - began)
    elapsed = time.perf_counter() - start
    return {"requests": n, "seconds": round(elapsed, 3), "requests_per_second": round(n / elapsed, 1)} | summary(
        latencies
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=500, help="requests per measurement")
    parser.add_argument("--encoding", choices=["utf-8", "shift_jis"], default="utf-8")
    parser.add_argument("--http", action="store_true", help="the fake central server on a real socket")
    parser.add_argument("--server", help="a running central server instead of the fake")
    parser.add_argument("--token", help="facility token for --server")
    args = parser.parse_args()
    encoding: XmlEncoding = "shift_jis" if args.encoding == "shift_jis" else "utf-8"
    with tempfile.TemporaryDirectory() as tmp, server_client(args) as client:
        folder_root, json_root = Path(tmp) / "folder", Path(tmp) / "json"
        with TerminalState.for_root(folder_root) as state:
            folder = bench_folder(XmlTerminal(client, state), folder_root, args.n, encoding)
        with TerminalState.for_root(json_root) as state:
            json_path = bench_json(XmlTerminal(client, state), args.n)
    server = args.server or ("fake over HTTP on 127.0.0.1" if args.http else "fake via httpx.MockTransport")
    print(
        json.dumps(
            {
                "server": server,
                "encoding": encoding,
                "folder": folder,
                "json": json_path,
                "folder_vs_json_throughput": round(
                    folder["burst"]["requests_per_second"] / json_path["requests_per_second"], 3
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
