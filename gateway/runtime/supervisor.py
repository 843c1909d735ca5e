"""Several worker processes on one port: start them, restart crashed ones, pass SIGHUP on
(every worker reloads), drain on SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Final

import aiohttp
from aiohttp import http_parser

from gateway.config import Settings, load_settings
from gateway.config.redis_url import is_memory_url
from gateway.config.restart_only import restart_changes
from gateway.errors import ConfigError
from gateway.observability.logs import configure_logging
from gateway.observability.metrics import RESTARTS_FILE
from gateway.runtime.pid_file import pid_file
from gateway.runtime.serve import run_loop
from gateway.services import check_configuration

log = logging.getLogger("gateway")

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
WORKER_START_TIMEOUT: Final = 30.0
RESTART_DELAY: Final = 1.0
SUPERVISE_INTERVAL: Final = 0.2  # how often workers are checked (signals are handled at once)
CHECK_THREAD: Final = "config-check"
# The aiohttp releases the gateway is tested with, [from, below): it overrides aiohttp
# internals (AppRunner._make_server in runtime/runner.py, web_protocol.RequestHandler and
# web.Server's connection arguments in edge/connections.py) that a minor release may change.
# pyproject.toml bounds it the same.
AIOHTTP_TESTED: Final = ((3, 14, 1), (3, 15))


def worker_count(settings: Settings, requested: int | None) -> int:
    """How many processes to run; refuses several workers on the in-process store."""
    memory = is_memory_url(settings.redis.url)
    count = requested if requested is not None else settings.listen.workers
    if count and count > 1 and memory:
        raise ConfigError(
            f"--workers {count} needs a shared Redis: redis.url memory:// is an in-process "
            "store, so each worker would have its own sessions and revocations. Use "
            "--workers 1 or a redis:// URL"
        )
    if count:
        return count
    return 1 if memory else len(os.sched_getaffinity(0))


def run(
    settings: Settings,
    *,
    workers: int = 1,
    config: Path | None = None,
    pid_path: Path | None = None,
) -> int:
    """Blocking entry point: one process, or a supervisor of `workers` processes. SIGHUP
    reloads `config` (the file `settings` came from); `pid_path` names this process."""
    require_tested_aiohttp()
    require_c_parser()
    # Until the process (or each worker) has its SIGHUP handler, a SIGHUP is held back rather
    # than ending it (the default action); workers inherit the blocked signal.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    with pid_file(pid_path):
        if workers <= 1:
            run_loop(settings, config=config, reuse_port=False)
            return 0
        return Supervisor(settings, workers, config=config).run()


def require_tested_aiohttp() -> None:
    """Refuse to serve on an aiohttp release outside AIOHTTP_TESTED, naming the version: the
    gateway's connection layer replaces parts of aiohttp's server that are not its API."""
    version = aiohttp.__version__
    match = re.match(r"\d+(?:\.\d+)*", version)
    release = tuple(int(part) for part in match.group().split(".")) if match else ()
    low, high = AIOHTTP_TESTED
    if not low <= release < high:
        tested = f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
        raise ConfigError(
            f"aiohttp {version} is installed; the gateway is tested with aiohttp{tested} "
            "(it overrides parts of aiohttp's server): install a tested release, e.g. "
            f"pip install 'aiohttp{tested}'"
        )


def require_c_parser() -> None:
    """Refuse to serve on aiohttp's pure-Python HTTP parser (C extensions missing, or
    AIOHTTP_NO_EXTENSIONS set). SECURITY: the two parsers disagree on edge cases (lowercase
    methods, odd versions); a proxy must read every request exactly one way."""
    if http_parser.HttpRequestParser is http_parser.HttpRequestParserPy:
        raise ConfigError(
            "aiohttp's C HTTP parser is not in use (its C extensions are missing, or "
            "AIOHTTP_NO_EXTENSIONS is set): install aiohttp with its extensions and unset "
            "AIOHTTP_NO_EXTENSIONS"
        )


def _worker_main(
    settings: Settings, config: Path | None, ready: Connection, parent_pid: int
) -> None:
    """A worker process: its own event loop, store pool and revocation view."""
    configure_logging(
        level=settings.logging.level,
        json_format=settings.logging.format == "json",
        access=settings.logging.access_log,
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; SIGTERM drains

    try:
        run_loop(
            settings,
            config=config,
            reuse_port=True,
            on_ready=lambda: _report_ready(ready),
            parent_pid=parent_pid,
        )
    finally:
        logging.shutdown()  # flush batched access lines: worker processes end in os._exit


def _report_ready(ready: Connection) -> None:
    """One byte down a pipe: unlike a shared Event, it takes no lock a supervisor killed
    while waiting could have left held, so a worker can never hang here."""
    try:
        ready.send_bytes(b"1")
    except OSError:
        pass  # the supervisor is gone; the parent watchdog takes it from here
    finally:
        ready.close()


class Supervisor:
    """Starts N workers on one port (SO_REUSEPORT), restarts crashed ones, passes SIGHUP on
    to every worker (each reloads itself), drains on SIGTERM.

    Workers are spawned (not forked) so that each one imports prometheus-client with the
    shared multiprocess directory set: /metrics then adds up every worker's counters.
    """

    def __init__(self, settings: Settings, workers: int, *, config: Path | None = None):
        self._settings = settings  # what a worker starts with: the last configuration reloaded
        self._config = config
        self._count = workers
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[BaseProcess] = []
        self._stopping = False
        self._reload_requested = False
        self._restarts = 0
        self._wakeup = -1  # read end of the signal wakeup pipe, while `run` runs
        # Reloaded configurations are checked on a thread of their own, in order.
        self._checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=CHECK_THREAD)
        self._checks: list[Future[Settings | None]] = []

    def run(self) -> int:
        metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
        previous = {
            signum: signal.signal(signum, self._request_stop)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._request_reload)
        # Each signal also writes a byte here, which ends the supervisor's nap at once.
        wakeup, wakeup_writer = os.pipe()
        for fd in (wakeup, wakeup_writer):
            os.set_blocking(fd, False)
        self._wakeup = wakeup
        previous_wakeup = signal.set_wakeup_fd(wakeup_writer)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        quiet_checks = _NotFrom(CHECK_THREAD)  # the workers say what a configuration lacks
        log.addFilter(quiet_checks)
        try:
            if not self._start_all():
                self._stop_all()
                return 1
            log.info("%d workers serving on port %d", self._count, self._settings.listen.port)
            self._supervise()
            return 0 if self._stop_all() else 1
        finally:
            self._checker.shutdown(wait=False, cancel_futures=True)
            log.removeFilter(quiet_checks)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wakeup)
            os.close(wakeup_writer)
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _request_stop(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def _request_reload(self, signum: int, _frame: object) -> None:
        self._reload_requested = True

    def _spawn(self) -> tuple[BaseProcess, Connection]:
        ready, ready_writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_worker_main,
            args=(self._settings, self._config, ready_writer, os.getpid()),
            name="gateway-worker",
        )
        with _sighup_held():  # the worker starts with SIGHUP blocked until it can reload
            process.start()
        ready_writer.close()  # the worker holds the other copy: its exit reads as EOF here
        return process, ready

    def _reload(self) -> None:
        """SIGHUP: every worker reloads itself (and logs how it went); a worker started
        from now on (after a crash) gets the new configuration once it is found valid."""
        self._reload_requested = False
        loaded: Settings | None = None
        if self._config is not None:  # read as the workers read it, a moment later
            try:
                loaded = load_settings(self._config)
            except ConfigError:
                loaded = None  # the workers refuse it and say why
        workers = [p.pid for p in self._workers if p.is_alive() and p.pid is not None]
        for pid in workers:
            os.kill(pid, signal.SIGHUP)
        log.info("SIGHUP: %d workers reload their configuration", len(workers))
        if loaded is not None:  # checked aside: the next signal is passed on at once
            self._checks.append(self._checker.submit(_checked, loaded))

    def _adopt_checked(self, *, wait: bool = False) -> None:
        """The settings of every finished check (with `wait`, of every check), in order,
        that a worker would take."""
        while self._checks and (wait or self._checks[0].done()):
            settings = self._checks.pop(0).result()
            if settings is not None and not restart_changes(self._settings, settings):
                self._settings = settings

    def _start_all(self) -> bool:
        started = [self._spawn() for _ in range(self._count)]
        self._workers = [process for process, _ in started]
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        try:
            for process, ready in started:
                if not self._wait_ready(process, ready, deadline):
                    log.error("a worker failed to start (exit code %s)", process.exitcode)
                    return False
            return True
        finally:
            for _, ready in started:
                ready.close()

    def _wait_ready(self, process: BaseProcess, ready: Connection, deadline: float) -> bool:
        while not ready.poll(0.1):
            if not process.is_alive() or time.monotonic() > deadline or self._stopping:
                return False
        try:
            return ready.recv_bytes() == b"1"
        except (EOFError, OSError):  # exited before it was ready
            return False

    def _nap(self, seconds: float) -> None:
        """Sleep, or less: a signal (its handler has run) ends the nap at once."""
        readable, _, _ = select.select([self._wakeup], [], [], seconds)
        if readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wakeup, 64):
                    pass

    def _supervise(self) -> None:
        while not self._stopping:
            self._nap(SUPERVISE_INTERVAL)
            if self._reload_requested:
                self._reload()
            self._adopt_checked()
            for index, process in enumerate(self._workers):
                if process.is_alive() or self._stopping:
                    continue
                log.error("worker %s exited with %s; restarting it", process.pid, process.exitcode)
                self._forget_metrics(process)
                self._count_restart()
                time.sleep(RESTART_DELAY)
                self._adopt_checked(wait=True)  # a reload just before: the worker gets it
                process, ready = self._spawn()
                ready.close()
                self._workers[index] = process

    def _stop_all(self) -> bool:
        """SIGTERM every worker (each drains), wait for them; True when all exited cleanly."""
        for process in self._workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._settings.proxy.drain_timeout + 10
        clean = True
        for process in self._workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
                clean = False
            elif process.exitcode != 0:
                clean = False
        log.info("all workers stopped")
        return clean

    def _count_restart(self) -> None:
        """gateway_worker_restarts_total, as every worker's /metrics reads it."""
        self._restarts += 1
        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            path = os.path.join(directory, RESTARTS_FILE)
            with open(path + ".tmp", "w") as handle:
                handle.write(str(self._restarts))
            os.replace(path + ".tmp", path)  # readers never see a half-written number

    @staticmethod
    def _forget_metrics(process: BaseProcess) -> None:
        if process.pid is not None and os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]


@contextmanager
def _sighup_held() -> Iterator[None]:
    """SIGHUP blocked in this thread for the block (a process started in it inherits the
    blocked signal, and a SIGHUP to it waits until it unblocks it)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _checked(settings: Settings) -> Settings | None:
    """The settings if they pass check-config's checks (the files they name), else None."""
    try:
        check_configuration(settings)
    except ConfigError:
        return None
    return settings


class _NotFrom(logging.Filter):
    """Drops the records of threads whose names start with `prefix`."""

    def __init__(self, prefix: str):
        super().__init__()
        self._prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName or "").startswith(self._prefix)
