"""Processes started ahead of time.

A test whose point is a process boundary (run.py as a user runs it, a fresh interpreter) waits seconds for that
process to import torch and Lightning, while the session's own process, mostly on one thread, leaves the other
core idle. Such a test is marked ``@pytest.mark.ahead(builder=...)``, where ``builder(request, folder)`` returns
its commands ({name: Command}); when the session starts, conftest builds the commands of every selected test's
marks and runs them one after another on a background thread, and the test takes their outcomes from the
``ahead_outcomes`` fixture, waiting for them if they are not finished yet.
"""
from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest


@dataclass(frozen=True)
class Command:
    """One process to run: its argv, folder and environment (None: this process's), stopped after ``timeout`` s."""

    argv: list[str]
    cwd: Path
    env: dict[str, str] | None = None
    timeout: float = 300


Builder = Callable[[pytest.FixtureRequest, Path], dict[str, Command]]


class Outcomes(NamedTuple):
    """What a builder's commands did: the folder it was given, and each command's finished process by name."""

    folder: Path
    processes: dict[str, subprocess.CompletedProcess]


def start(command: Command) -> subprocess.Popen:
    """``command`` started with its output captured (text)."""
    return subprocess.Popen(command.argv, cwd=command.cwd, env=command.env if command.env is not None else os.environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    """``proc`` run to its end; killed (and TimeoutExpired raised) after ``timeout`` seconds."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(command: Command) -> subprocess.CompletedProcess:
    """``command`` run here and now."""
    return finish(start(command), command.timeout)


class Ahead:
    """The builders' commands, run in the order they are submitted on one background thread."""

    def __init__(self) -> None:
        self._pending: queue.Queue = queue.Queue()
        self._done: dict[Builder, threading.Event] = {}
        self._folders: dict[Builder, Path] = {}
        self._outcomes: dict[Builder, dict[str, subprocess.CompletedProcess | BaseException]] = {}
        self._running: subprocess.Popen | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def submit(self, builder: Builder, folder: Path, commands: dict[str, Command]) -> None:
        """Queue the ``commands`` that ``builder`` made in ``folder`` (a builder is submitted once)."""
        if builder not in self._done:
            self._done[builder], self._folders[builder] = threading.Event(), folder
            self._pending.put((builder, commands))

    def outcomes(self, builder: Builder) -> Outcomes | None:
        """What ``builder``'s commands did (waiting for them to finish), or None when it was not submitted."""
        if builder not in self._done:
            return None
        self._done[builder].wait()
        failed = [err for err in self._outcomes[builder].values() if isinstance(err, BaseException)]
        if failed:
            raise failed[0]  # a timeout, or a command that could not start: the test shows it
        return Outcomes(self._folders[builder], self._outcomes[builder])  # type: ignore[arg-type]

    def close(self) -> None:
        """End the work: what has not started is dropped, what runs is killed (a session stopped early by -x or
        Ctrl-C waits for nothing; a finished session has nothing left)."""
        self._closing = True
        self._pending.put(None)
        while self._thread.is_alive():
            running = self._running
            if running is not None and running.poll() is None:
                running.kill()
            self._thread.join(timeout=0.1)

    def _work(self) -> None:
        while (item := self._pending.get()) is not None:
            builder, commands = item
            results: dict[str, subprocess.CompletedProcess | BaseException] = {}
            for name, command in commands.items():
                if self._closing:
                    results[name] = RuntimeError("the session ended before this command ran")
                    continue
                try:
                    self._running = start(command)
                    results[name] = finish(self._running, command.timeout)
                except (OSError, subprocess.TimeoutExpired) as err:
                    results[name] = err
                finally:
                    self._running = None
            self._outcomes[builder] = results
            self._done[builder].set()
