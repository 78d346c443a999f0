"""The process that starts the workers of ``serve(workers=N)`` and watches them.

It runs no event loop: it forks the workers before any runs, then sleeps in
``select`` until a signal wakes it (`signal.set_wakeup_fd`: SIGCHLD when a
worker ends, SIGINT or SIGTERM to stop) or a worker says that it serves.

A worker that ends while the server runs is replaced; one whose start-up
failed (its lifespan) ends them all, since every other would fail the same
way; workers that keep ending as soon as they start are replaced more and
more slowly, then given up on. SIGINT or SIGTERM goes on to every worker,
which shuts down as a single server does (1001 to each connection); one
still running after ``stop_timeout`` is killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, NoReturn

logger = logging.getLogger("fastrapi.server")

# A worker's exit status when its start-up failed: another would fail the same way.
EXIT_STARTUP_FAILED = 3
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
WATCHED_SIGNALS = {*STOP_SIGNALS, signal.SIGCHLD}

SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class RestartPolicy:
    """When to start another worker after one ended, and when to give up.

    A worker that ended before it served, or within ``rapid`` seconds of its
    start, most likely cannot start: its replacement waits ``rapid``
    seconds, and ``limit`` such ends in a row give up. One that ended after
    serving a while is replaced at once.
    """

    def __init__(self, rapid: float = 1.0, limit: int = 5) -> None:
        self.rapid = rapid
        self.limit = limit
        self.failures = 0  # rapid ends in a row

    def delay(self, lived: float, served: bool) -> float | None:
        """Seconds to wait before starting a replacement; None to give up."""
        if served and lived >= self.rapid:
            self.failures = 0
            return 0.0
        self.failures += 1
        return self.rapid if self.failures < self.limit else None


@dataclass(slots=True)
class Worker:
    pid: int
    started: float  # time.monotonic()
    serving: bool = False


def describe_exit(code: int | None) -> str:
    """An exit code of `os.waitstatus_to_exitcode` (negative: the signal) in words."""
    if code is None:
        return "status unknown"
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


class Supervisor:
    """Keeps ``count`` worker processes running until SIGINT or SIGTERM.

    Args:
        work: run in each forked worker with a function to call once it
            serves; returns the worker's exit status (`EXIT_STARTUP_FAILED`
            when its start-up failed).
        announce: called once, when ``count`` workers serve for the first time.
        release: called as the stop begins, to let go of the port: new
            connections are refused once the workers stop accepting.
        stop_timeout: seconds the workers get to shut down before they are killed.
    """

    def __init__(
        self,
        count: int,
        work: Callable[[Callable[[], None]], int],
        *,
        announce: Callable[[], None],
        release: Callable[[], None],
        stop_timeout: float,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.count = count
        self.work = work
        self.announce = announce
        self.release = release
        self.stop_timeout = stop_timeout
        self.policy = policy or RestartPolicy()
        self.workers: dict[int, Worker] = {}
        self.starts: list[float] = []  # when each worker still to start is due (time.monotonic())
        self.stop_signal: int | None = None
        self.failure: str | None = None  # why the supervisor gives up
        self.announced = False
        self._previous_handlers: dict[int, SignalHandler] = {}
        self._wake_read = self._wake_write = self._ready_read = self._ready_write = -1
        self._unread = b""  # the start of a message from a worker, the rest still to come

    def run(self) -> int:
        """Start the workers and keep them running until SIGINT or SIGTERM
        (then 0) or until they cannot be (then 1, logged); blocking."""
        with self._supervising():
            try:
                self.starts = [0.0] * self.count
                while self.stop_signal is None and self.failure is None:
                    self._start_due()
                    self._sleep(self._until_next_start())
                    # Messages first: a worker that said it serves and then
                    # ended did serve, even if both arrive in one wake-up.
                    self._read_messages()
                    self._reap()
            finally:
                self._stop()
        if self.failure is not None:
            logger.error("%s", self.failure)
            return 1
        return 0

    # -- starting ---------------------------------------------------------------

    def _start_due(self) -> None:
        now = time.monotonic()
        due = [when for when in self.starts if when <= now]
        self.starts = [when for when in self.starts if when > now]
        for _ in due:
            self._fork()

    def _until_next_start(self) -> float | None:
        return max(0.0, min(self.starts) - time.monotonic()) if self.starts else None

    def _fork(self) -> None:
        # Output still buffered here would be written again by the worker.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        # Until the worker has put back the signal handlers, a signal would
        # run the supervisor's in it: blocked, it waits for the worker's own.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._be_worker(mask)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.workers[pid] = Worker(pid, time.monotonic())
        logger.info("worker %d started", pid)

    def _be_worker(self, mask: set[int | signal.Signals]) -> NoReturn:
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for number, handler in self._previous_handlers.items():
                signal.signal(number, signal.SIG_DFL if handler is None else handler)
            for fd in (self._wake_read, self._wake_write, self._ready_read):
                os.close(fd)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            status = self.work(self._say_serving)
        except KeyboardInterrupt:
            status = 0  # SIGINT before the worker's server took it over, or after it let go
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        except BaseException:
            logger.exception("worker %d failed", os.getpid())
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            # Never back into the caller of serve(): that is the supervisor's program.
            os._exit(status)

    def _say_serving(self) -> None:
        # One write of a few bytes to a pipe is atomic: messages never interleave.
        os.write(self._ready_write, b"%d\n" % os.getpid())

    # -- watching -----------------------------------------------------------------

    @contextmanager
    def _supervising(self) -> Iterator[None]:
        self._wake_read, self._wake_write = os.pipe()
        self._ready_read, self._ready_write = os.pipe()
        for fd in (self._wake_read, self._wake_write, self._ready_read):
            os.set_blocking(fd, False)
        previous_wakeup = signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)
        try:
            for signum in WATCHED_SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
            yield
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for number, handler in self._previous_handlers.items():
                signal.signal(number, signal.SIG_DFL if handler is None else handler)
            for fd in (self._wake_read, self._wake_write, self._ready_read, self._ready_write):
                os.close(fd)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only noted: the wake-up pipe has ended the sleep, and the loop acts.
        if signum in STOP_SIGNALS and self.stop_signal is None:
            self.stop_signal = signum

    def _sleep(self, timeout: float | None) -> None:
        readable, _, _ = select.select([self._wake_read, self._ready_read], [], [], timeout)
        if self._wake_read in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_read, 512):
                    pass

    def _read_messages(self) -> None:
        try:
            self._unread += os.read(self._ready_read, 4096)
        except BlockingIOError:
            return
        *messages, self._unread = self._unread.split(b"\n")
        for message in messages:
            worker = self.workers.get(int(message))
            if worker is not None:
                worker.serving = True
        serving = sum(worker.serving for worker in self.workers.values())
        if not self.announced and serving >= self.count and self.stop_signal is None:
            self.announced = True
            self.announce()

    def _reap(self) -> None:
        for worker in list(self.workers.values()):
            try:
                pid, status = os.waitpid(worker.pid, os.WNOHANG)
                code: int | None = os.waitstatus_to_exitcode(status)
            except ChildProcessError:  # reaped elsewhere: its status is lost
                pid, code = worker.pid, None
            if pid:
                del self.workers[worker.pid]
                self._ended(worker, code)

    def _ended(self, worker: Worker, code: int | None) -> None:
        how = describe_exit(code)
        if self.stop_signal is not None or self.failure is not None:
            # Ended by the stop signal itself: before its server took the signal over.
            if code and code != -(self.stop_signal or signal.SIGTERM):
                logger.warning("worker %d ended on the stop with %s", worker.pid, how)
            return
        if code == EXIT_STARTUP_FAILED:
            self.failure = f"the start-up of worker {worker.pid} failed; not serving"
            return
        delay = self.policy.delay(time.monotonic() - worker.started, worker.serving)
        if delay is None:
            self.failure = (
                f"workers keep ending as soon as they start ({self.policy.limit} in a row, "
                f"the last: worker {worker.pid}, {how}); giving up"
            )
            return
        later = f" in {delay:g} s" if delay else ""
        logger.warning("worker %d ended unexpectedly (%s); starting another%s", worker.pid, how, later)
        self.starts.append(time.monotonic() + delay)

    # -- stopping -------------------------------------------------------------------

    def _stop(self) -> None:
        signum = self.stop_signal or signal.SIGTERM
        if self.stop_signal is not None:
            logger.info("%s received; stopping the workers", signal.Signals(signum).name)
        self.starts.clear()
        self.release()
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):  # reaped elsewhere
                os.kill(worker.pid, signum)
        deadline = time.monotonic() + self.stop_timeout
        while self.workers and (left := deadline - time.monotonic()) > 0:
            self._sleep(left)
            self._read_messages()
            self._reap()
        for worker in list(self.workers.values()):
            logger.warning(
                "worker %d still running %g s after the stop; killing it", worker.pid, self.stop_timeout
            )
            with contextlib.suppress(ProcessLookupError, ChildProcessError):  # reaped elsewhere
                os.kill(worker.pid, signal.SIGKILL)
                os.waitpid(worker.pid, 0)  # at once: SIGKILL is not caught
            del self.workers[worker.pid]
