"""Logs: their setup for `gateway serve`, JSON event lines, and the access log's batching
handler. What an access line says is the edge's business (gateway.edge.access_lines).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import deque
from collections.abc import Mapping
from typing import Final

access_log = logging.getLogger("gateway.access")
FLUSH_INTERVAL: Final = 0.2  # seconds an access line may wait in memory
FLUSH_BYTES: Final = 64 * 1024
# Printable ASCII but space, `"`, `=` and `\`: a value that is one field of a line as it is.
_PLAIN_VALUE: Final = re.compile(r"[!#-<>-\[\]-~]+").fullmatch


def log_value(value: str) -> str:
    """A value for a `key=value` log line: as it is when it is one plain token, else quoted
    with JSON's escapes. SECURITY: values from outside (a sub, a path) cannot end a line or
    add a field of their own (`alice auth=cookie`, a newline and a whole forged line)."""
    return value if _PLAIN_VALUE(value) else json.dumps(value)


def with_quoted_args(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its string arguments as `log_value` writes them (a copy when any
    changes: other handlers see the record as it was)."""
    args = record.args
    if not args:
        return record
    if isinstance(args, Mapping):
        quoted: object = {k: log_value(v) if isinstance(v, str) else v for k, v in args.items()}
    else:
        quoted = tuple(log_value(a) if isinstance(a, str) else a for a in args)
    if quoted == args:
        return record
    copy = logging.makeLogRecord(record.__dict__)
    copy.args = quoted  # type: ignore[assignment]
    return copy


class TextFormatter(logging.Formatter):
    """Text event lines whose string arguments cannot forge fields (`log_value`)."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(with_quoted_args(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; access lines are JSON already and pass through."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == access_log.name:
            return record.getMessage()
        record = with_quoted_args(record)
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes access lines in batches: at most every FLUSH_INTERVAL seconds or FLUSH_BYTES,
    instead of one write system call per request. Flushed on exit (logging.shutdown)."""

    def __init__(self) -> None:
        super().__init__()
        # The event loop appends, the flusher pops: a deque needs no lock for that.
        self._pending: deque[str] = deque()
        self._size = 0  # approximate (updated without a lock): it only decides when to flush
        self._stop = threading.Event()
        threading.Thread(target=self._flush_periodically, name="access-log", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.add_line(line)

    def add_line(self, line: str) -> None:
        self._pending.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            pending = self._pending
            if not pending:
                return
            self._size = 0
            lines = [pending.popleft() for _ in range(len(pending))]
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()

    def _flush_periodically(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            self.flush()


def configure_logging(*, level: str, json_format: bool, access: bool) -> None:
    """Root logging for `gateway serve`; library loggers stay at WARNING. Access lines go
    through a batching handler of their own (same stream, same format)."""
    formatter: logging.Formatter = (
        JsonFormatter()
        if json_format
        else TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("gateway").setLevel(level)
    for old in access_log.handlers[:]:
        access_log.removeHandler(old)
        old.close()
    if access:
        batching = BatchingHandler()
        batching.setFormatter(formatter)
        access_log.addHandler(batching)
    access_log.propagate = False
    access_log.setLevel(logging.INFO if access else logging.WARNING)
