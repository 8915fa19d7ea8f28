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

Nothing found in the folders is trusted (``files.py``): only regular files are read (a link, FIFO,
device, socket or directory named like a request gets a ``.err``), at most ``REQUEST_SIZE_LIMIT``
bytes of them, and results are never written through a link. Workers are daemon threads: a stop
waits ``stop_grace`` seconds for the requests in flight, then returns; a request still in flight
then writes nothing more and is answered at the next start, exactly as after a crash.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clinic_terminal.xmlif.documents import parse_request, render_xml, to_json
from clinic_terminal.xmlif.files import (
    RESULT_FILE_MODE,
    UnsafeFile,
    identity_of_regular,
    publish,
    read_regular,
    temp_path,
    write_atomic,
    write_temp,
)
from clinic_terminal.xmlif.model import XmlEncoding
from clinic_terminal.xmlif.parse import MAX_REQUEST_BYTES, RequestError, result_name
from clinic_terminal.xmlif.service import XmlTerminal
from clinic_terminal.xmlif.state import JournalEntry
from schemas.identifiers import withhold_my_number

log = logging.getLogger(__name__)

REQ_DIR, RES_DIR, FACE_DIR = "req", "res", "face"
WatchMode = Literal["inotify", "poll"]
Outcome = Literal["answered", "error", "skipped", "deferred"]

REQUEST_SIZE_LIMIT = 1024 * 1024  # real requests are a few KB
BULK_REQUEST_SIZE_LIMIT = MAX_REQUEST_BYTES  # a 一括照会 registration: up to 10,000 search infos
BULK_REGISTRATION_PREFIX = "OQSmuquc01req_"
STOP_GRACE_SECONDS = 1.0


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
        file_mode: int = RESULT_FILE_MODE,
        max_request_bytes: int = REQUEST_SIZE_LIMIT,
        stop_grace: float = STOP_GRACE_SECONDS,
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
        self.file_mode = file_mode
        self.max_request_bytes = max_request_bytes
        self.stop_grace = stop_grace
        self.stats = WatchStats()
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) when last handled
        self._deferred: set[str] = set()
        self._inflight: set[str] = set()
        self._again: dict[str, bool] = {}  # seen again while in flight -> complete flag
        self._queue: queue.SimpleQueue[tuple[str, bool] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()  # run() is ending: take no new work
        self._abandoned = threading.Event()  # run() has returned: a worker still busy writes nothing
        ensure_folders(self.root)

    # --- start-up
    def recover(self) -> None:
        """Finish results that were rendered but maybe not moved into place before a crash."""
        pending = self.state.journal_pending()
        done = [entry.name for entry in pending if self._finish(entry)]
        if done:
            self.state.journal_mark_done(done)

    def _finish(self, entry: JournalEntry) -> bool:
        """Move a rendered result into place; False if what is at the temp name is not a regular
        file (planted there: removed, and the request forgotten so that it is answered afresh)."""
        final = self.res / entry.output
        tmp = temp_path(final)
        try:
            identity = identity_of_regular(tmp)
        except FileNotFoundError:
            return True  # the move had happened
        if identity is None:
            log.warning("%s (temp of %s) is not a regular file: removed, not delivered", tmp.name, entry.output)
            if not tmp.is_dir() or tmp.is_symlink():
                tmp.unlink()
            self.state.journal_delete(entry.name)
            return False
        if os.path.lexists(final):
            tmp.unlink()  # never rewrite a delivered file
            return True
        publish(tmp, final, durable=self.durable, identity=identity)
        log.info("recovered %s -> %s", entry.name, entry.output)
        return True

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
            if self._abandoned.is_set():  # stopped under it (state or client closed): next start
                log.info("request %s left for the next start (%s)", name, type(exc).__name__)
                return "deferred"
            log.exception("request %s failed inside the terminal", name)
            try:
                st = os.lstat(self.req / name)
                self._mark_seen(name, (st.st_size, st.st_mtime_ns))
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
            st = os.lstat(path)
            signature = (st.st_size, st.st_mtime_ns)
            with self._lock:
                if self._seen.get(name) == signature and name not in self._deferred:
                    return "skipped"
            data = read_regular(path, self._size_limit(name))
        except UnsafeFile as exc:  # a link, FIFO, device, socket, directory, or too large
            return self._error(name, "", signature, str(exc))
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
        if entry is not None and entry.state == "rendered" and not self._finish(entry):
            entry = None  # its result was never delivered
        if entry is not None and (entry.sha256 == digest or entry.state != "error"):
            self._mark_seen(name, signature)
            if entry.sha256 != digest and not os.path.lexists(self.req / f"{name}.err"):
                reason = "this request name was already answered; use a new file name"
                self._write_error(name, entry.sha256, reason, journal=False)
            self._count("skipped")
            return "skipped"
        try:
            out_name = result_name(name)
        except RequestError as exc:
            return self._error(name, digest, signature, str(exc))
        final = self.res / out_name
        if entry is None and os.path.lexists(final):
            # answered before the journal knew (or by another terminal): never rewrite it
            self.state.journal_set(name, digest, "done", out_name)
            self._mark_seen(name, signature)
            self._count("skipped")
            return "skipped"
        try:
            request = parse_request(name, data)
        except RequestError as exc:
            if not complete and time.time() - st.st_mtime < self.settle_seconds:
                with self._lock:
                    self._deferred.add(name)  # maybe still being written: look again later
                return "deferred"
            return self._error(name, digest, signature, str(exc))
        file_id = out_name.removesuffix(".xml")
        result = self.terminal.answer(file_id, request)
        body = render_xml(result, self.encoding)
        if self._abandoned.is_set():  # stopped while the server answered: the next start answers it
            return "deferred"
        tmp = write_temp(final, body, durable=self.durable, mode=self.file_mode)
        if self._abandoned.is_set():  # the temp file is stale now; the next write replaces it
            return "deferred"
        self.state.journal_rendered(name, digest, out_name, file_id=file_id, kind=result.kind, body=to_json(result))
        publish(tmp.path, final, durable=self.durable, identity=tmp.identity)
        self._mark_seen(name, signature)
        stale = self.req / f"{name}.err"
        if os.path.lexists(stale):
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
        reason = withhold_my_number(reason)  # the last guard: a reason may quote a request's text
        log.warning("request %s cannot be answered: %s", name, reason)
        text = f"{name}: {reason}\n"
        write_atomic(self.req / f"{name}.err", text.encode("utf-8"), durable=self.durable, mode=self.file_mode)
        if journal and digest:
            self.state.journal_set(name, digest, "error", f"{name}.err")
        self._count("errors")

    def _size_limit(self, name: str) -> int:
        if name.startswith(BULK_REGISTRATION_PREFIX):
            return max(self.max_request_bytes, BULK_REQUEST_SIZE_LIMIT)
        return self.max_request_bytes

    # --- scanning and dispatching
    def _names(self) -> list[str]:
        entries: list[tuple[int, str]] = []
        try:
            with os.scandir(self.req) as it:
                for e in it:
                    if not is_candidate(e.name):
                        continue
                    try:  # the entry itself: a dangling link must not end the scan
                        entries.append((e.stat(follow_symlinks=False).st_mtime_ns, e.name))
                    except FileNotFoundError:
                        continue
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
        if not self._threads:
            self.handle(name, complete=complete)
            return
        with self._lock:
            if name in self._inflight:
                self._again[name] = self._again.get(name, False) or complete
                return
            self._inflight.add(name)
        self._queue.put((name, complete))

    def _worker(self) -> None:
        while (item := self._queue.get()) is not None:
            name, complete = item
            if self._stopping.is_set():  # left for the next start
                with self._lock:
                    self._inflight.discard(name)
                    self._again.pop(name, None)
                continue
            self._work(name, complete)

    def _work(self, name: str, complete: bool) -> None:
        while True:
            self.handle(name, complete=complete)
            with self._lock:
                if name not in self._again or self._stopping.is_set():
                    self._inflight.discard(name)
                    self._again.pop(name, None)
                    return
                complete = self._again.pop(name)

    def _start_workers(self) -> None:
        self._stopping.clear()
        self._abandoned.clear()
        self._queue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._worker, name=f"xmlif-{i}", daemon=True) for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def _stop_workers(self) -> None:
        """Take no new work, give the requests in flight ``stop_grace`` seconds, then let go."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + self.stop_grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = [thread.name for thread in self._threads if thread.is_alive()]
        if busy:
            self._abandoned.set()
            log.warning("stopped with %d request(s) still in flight; they are answered at the next start", len(busy))
        self._threads = []

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
        self._start_workers()  # even one: this thread stays free to notice ``stop``
        try:
            if self.mode == "inotify":
                try:
                    self._run_inotify(stop)
                    return
                except OSError as exc:  # no inotify here (e.g. a network share): poll instead
                    log.warning("inotify unavailable (%s); polling every %.1fs", exc, self.poll_interval)
            self._run_poll(stop)
        finally:
            self._stop_workers()

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
