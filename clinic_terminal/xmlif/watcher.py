"""The folder interface: watch ``req/``, answer into ``res/``, never twice.

Exactly-once across restarts (a crash or SIGKILL at any point):
1. a request whose name is in the journal (same content) is never answered again;
2. at start, a request whose result already exists in ``res/`` is recorded as answered;
3. a result is written to a hidden temp file beside its final name (fsync), then journalled as
   ``rendered`` together with its JSON rendering (one SQLite transaction), then moved into place
   with ``os.replace`` (and the folder fsynced). A ``rendered`` entry whose temp file still exists
   is finished by moving it into place (at start, or when the request is seen again); if the temp
   file is gone the move had happened, and clinic software may already have taken the result.

A request that cannot be read gets ``<name>.err`` (a plain-text reason, UTF-8) beside it in
``req/``. The watcher never stops on a bad request or a server failure; a server failure is
answered (SegmentOfResult 9, see docs/xml-interface.md), not retried.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clinic_terminal.xmlif.files import publish, temp_path, write_atomic, write_temp
from clinic_terminal.xmlif.model import XmlEncoding
from clinic_terminal.xmlif.parse import RequestError, parse_request, result_name
from clinic_terminal.xmlif.render import render_xml, to_json
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import JournalEntry

log = logging.getLogger(__name__)

REQ_DIR, RES_DIR, FACE_DIR = "req", "res", "face"
WatchMode = Literal["inotify", "poll"]
Outcome = Literal["answered", "error", "skipped", "deferred"]


def ensure_folders(root: Path) -> None:
    for name in (REQ_DIR, RES_DIR, FACE_DIR):
        (root / name).mkdir(parents=True, exist_ok=True)


def is_candidate(name: str) -> bool:
    """Files the watcher looks at: ``*.xml`` that are not hidden (temp files are hidden)."""
    return not name.startswith(".") and name.lower().endswith(".xml")


@dataclass
class WatchStats:
    answered: int = 0
    errors: int = 0
    skipped: int = 0


class FolderWatcher:
    """Answers request files in ``<root>/req`` into ``<root>/res``.

    ``workers`` > 1 answers that many requests at a time (the server round trip dominates);
    one request name is never handled by two workers at once."""

    def __init__(
        self,
        root: Path,
        terminal: XmlTerminal,
        *,
        encoding: XmlEncoding = "utf-8",
        mode: WatchMode = "inotify",
        poll_interval: float = 0.5,
        settle_seconds: float = 2.0,
        rescan_interval: float = 30.0,
        durable: bool = True,
        workers: int = 4,
        on_answer: Callable[[str, Path], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.req = self.root / REQ_DIR
        self.res = self.root / RES_DIR
        self.terminal = terminal
        self.state = terminal.state
        self.encoding: XmlEncoding = encoding
        self.mode: WatchMode = mode
        self.poll_interval = poll_interval
        self.settle_seconds = settle_seconds
        self.rescan_interval = rescan_interval
        self.durable = durable
        self.workers = max(1, workers)
        self.on_answer = on_answer
        self.stats = WatchStats()
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) when last handled
        self._deferred: set[str] = set()
        self._inflight: set[str] = set()
        self._again: dict[str, bool] = {}  # seen again while in flight -> complete flag
        self._pool: ThreadPoolExecutor | None = None
        ensure_folders(self.root)

    # --- start-up
    def recover(self) -> None:
        """Finish results that were rendered but maybe not moved into place before a crash."""
        pending = self.state.journal_pending()
        for entry in pending:
            self._finish(entry)
        if pending:
            self.state.journal_mark_done([e.name for e in pending])

    def _finish(self, entry: JournalEntry) -> None:
        final = self.res / entry.output
        tmp = temp_path(final)
        if not tmp.exists():
            return
        if final.exists():
            tmp.unlink()  # never rewrite a delivered file
            return
        publish(tmp, final, durable=self.durable)
        log.info("recovered %s -> %s", entry.name, entry.output)

    # --- one request
    def handle(self, name: str, *, complete: bool = False) -> Outcome:
        """Answer ``req/<name>`` unless it was answered before. Never raises.

        ``complete``: the file is known to be whole (an inotify rename or close-after-write); a
        file found by a scan that cannot be read yet is looked at again until it is
        ``settle_seconds`` old, as it may still be being written."""
        if not is_candidate(name):
            return "skipped"
        try:
            return self._handle(name, complete)
        except Exception as exc:  # the watcher must keep going whatever one file does
            log.exception("request %s failed inside the terminal", name)
            try:
                stat = (self.req / name).stat()
                self._mark_seen(name, (stat.st_size, stat.st_mtime_ns))
                self._write_error(name, "", f"terminal error: {type(exc).__name__}: {exc}")
            except OSError:
                log.exception("could not write %s.err", name)
            return "error"

    def _mark_seen(self, name: str, signature: tuple[int, int]) -> None:
        with self._lock:
            self._seen[name] = signature
            self._deferred.discard(name)

    def _count(self, what: Literal["answered", "errors", "skipped"]) -> None:
        with self._lock:
            setattr(self.stats, what, getattr(self.stats, what) + 1)

    def _handle(self, name: str, complete: bool) -> Outcome:
        path = self.req / name
        try:
            stat = path.stat()
            signature = (stat.st_size, stat.st_mtime_ns)
            with self._lock:
                if self._seen.get(name) == signature and name not in self._deferred:
                    return "skipped"
            data = path.read_bytes()
        except FileNotFoundError:
            with self._lock:
                self._deferred.discard(name)
            return "skipped"
        except OSError as exc:  # e.g. still locked by the writer on a share: try again later
            log.info("cannot read %s yet: %s", name, exc)
            with self._lock:
                self._deferred.add(name)
            return "deferred"
        digest = hashlib.sha256(data).hexdigest()
        entry = self.state.journal_get(name)
        if entry is not None and entry.state == "rendered":
            self._finish(entry)
        if entry is not None and (entry.sha256 == digest or entry.state != "error"):
            self._mark_seen(name, signature)
            if entry.sha256 != digest and not (self.req / f"{name}.err").exists():
                reason = "this request name was already answered; use a new file name"
                self._write_error(name, entry.sha256, reason, journal=False)
            self._count("skipped")
            return "skipped"
        try:
            out_name = result_name(name)
        except RequestError as exc:
            return self._error(name, digest, signature, str(exc))
        final = self.res / out_name
        if entry is None and final.exists():
            # answered before the journal knew (or by another terminal): never rewrite it
            self.state.journal_set(name, digest, "done", out_name)
            self._mark_seen(name, signature)
            self._count("skipped")
            return "skipped"
        try:
            request = parse_request(name, data)
        except RequestError as exc:
            if not complete and time.time() - stat.st_mtime < self.settle_seconds:
                with self._lock:
                    self._deferred.add(name)  # maybe still being written: look again later
                return "deferred"
            return self._error(name, digest, signature, str(exc))
        file_id = out_name.removesuffix(".xml")
        result = self.terminal.answer(file_id, request)
        body = render_xml(result, self.encoding)
        tmp = write_temp(final, body, durable=self.durable)
        self.state.journal_rendered(name, digest, out_name, file_id=file_id, kind=result.kind, body=to_json(result))
        publish(tmp, final, durable=self.durable)
        self._mark_seen(name, signature)
        stale = self.req / f"{name}.err"
        if stale.exists():
            stale.unlink()
        self._count("answered")
        if self.on_answer is not None:
            self.on_answer(name, final)
        log.info("answered %s -> %s", name, out_name)
        return "answered"

    def _error(self, name: str, digest: str, signature: tuple[int, int], reason: str) -> Outcome:
        self._write_error(name, digest, reason)
        self._mark_seen(name, signature)
        return "error"

    def _write_error(self, name: str, digest: str, reason: str, *, journal: bool = True) -> None:
        log.warning("request %s cannot be answered: %s", name, reason)
        text = f"{name}: {reason}\n"
        write_atomic(self.req / f"{name}.err", text.encode("utf-8"), durable=self.durable)
        if journal and digest:
            self.state.journal_set(name, digest, "error", f"{name}.err")
        self._count("errors")

    # --- scanning and dispatching
    def _names(self) -> list[str]:
        try:
            entries = [(e.stat().st_mtime_ns, e.name) for e in os.scandir(self.req) if is_candidate(e.name)]
        except FileNotFoundError:
            ensure_folders(self.root)
            return []
        present = {name for _, name in entries}
        with self._lock:  # forget files that are gone (clinic software removed them)
            for name in [n for n in self._seen if n not in present]:
                del self._seen[name]
        return [name for _, name in sorted(entries)]

    def scan(self) -> int:
        """Handle every request now in ``req/`` (oldest first) in this thread; returns how many
        were answered."""
        return sum(1 for name in self._names() if self.handle(name) == "answered")

    def _dispatch(self, name: str, complete: bool = False) -> None:
        if self._pool is None:
            self.handle(name, complete=complete)
            return
        with self._lock:
            if name in self._inflight:
                self._again[name] = self._again.get(name, False) or complete
                return
            self._inflight.add(name)
        self._pool.submit(self._work, name, complete)

    def _work(self, name: str, complete: bool) -> None:
        while True:
            self.handle(name, complete=complete)
            with self._lock:
                if name not in self._again:
                    self._inflight.discard(name)
                    return
                complete = self._again.pop(name)

    def _dispatch_scan(self) -> None:
        for name in self._names():
            self._dispatch(name)

    def _retry_deferred(self) -> None:
        with self._lock:
            names = sorted(self._deferred)
        for name in names:
            self._dispatch(name)

    # --- watching
    def run(self, stop: threading.Event) -> None:
        """Watch until ``stop`` is set. inotify when asked and available, else polling."""
        self.recover()
        self._pool = ThreadPoolExecutor(self.workers, "xmlif") if self.workers > 1 else None
        try:
            if self.mode == "inotify":
                try:
                    self._run_inotify(stop)
                    return
                except OSError as exc:  # no inotify here (e.g. a network share): poll instead
                    log.warning("inotify unavailable (%s); polling every %.1fs", exc, self.poll_interval)
            self._run_poll(stop)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _run_poll(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._dispatch_scan()
            self._retry_deferred()
            stop.wait(self.poll_interval)

    def _run_inotify(self, stop: threading.Event) -> None:
        from inotify_simple import INotify, flags

        with INotify() as inotify:
            inotify.add_watch(str(self.req), flags.MOVED_TO | flags.CLOSE_WRITE)
            self._dispatch_scan()  # after the watch is in place: nothing falls between the two
            last_scan = time.monotonic()
            while not stop.is_set():
                for event in inotify.read(timeout=100):
                    if event.mask & flags.Q_OVERFLOW:
                        self._dispatch_scan()
                    elif event.name:
                        self._dispatch(event.name, complete=True)
                if self._deferred:
                    self._retry_deferred()
                if time.monotonic() - last_scan > self.rescan_interval:
                    self._dispatch_scan()  # safety net for missed events
                    last_scan = time.monotonic()
