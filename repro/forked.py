"""Python steps as forked children of a process that imported the heavy libraries once.

Importing torch, Lightning (with torchmetrics and torchvision), Hydra and torchattacks takes seconds per process
(about 25 s of wall time on a loaded 2-core CPU); the run runs some twenty Python steps. So the runner imports
them once (:func:`preload`) and forks each step from itself: the child runs ``run.py`` or ``python -m MODULE``
exactly as the command line would, in its own session (killable with its children) with its output in a log.

CUDA must never be initialised in the parent, or no child can use it: the parent only imports, and its CUDA
availability checks go through NVML (PYTORCH_NVML_BASED_CUDA_CHECK, which leaves the driver uninitialised).
"""
from __future__ import annotations

import importlib
import os
import runpy
import signal
import sys
import time
import traceback
from pathlib import Path

# Everything the steps import that is slow to import; the step programs themselves are not preloaded (runpy
# would run a second copy of an already imported module as __main__).
PRELOAD = ("torch", "pytorch_lightning", "hydra", "omegaconf", "torchattacks", "pandas", "pytest",
           "gdws.pipeline.runner", "gdws.train", "gdws.eval", "gdws.data", "gdws.models", "gdws.metrics",
           "gdws.fast", "gdws.tracking")
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")


def preload(site: Path) -> None:
    """Put the carried wheels' folder first on the import path and import PRELOAD."""
    if site.is_dir() and str(site) not in sys.path:
        sys.path.insert(0, str(site))
        importlib.invalidate_caches()
    for name in PRELOAD:
        importlib.import_module(name)


def can_fork(argv: list[str]) -> bool:
    """Whether ``argv`` is a Python script or ``-m`` module run (what a fork can run in-process)."""
    return len(argv) >= 2 and (argv[1] == "-m" and len(argv) >= 3 or argv[1].endswith(".py"))


def cuda_initialised() -> bool:
    """True when this process has initialised CUDA through torch (children could then not use it)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def start(argv: list[str], log_path: Path, cwd: Path, env: dict[str, str], threads: int | None) -> int:
    """Fork a child that runs ``argv`` (script or -m module) with ``env`` in ``cwd``, output appended to
    ``log_path``; returns its pid (its own process group)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setsid()
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        # new text streams on the redirected descriptors (the parent's may be wrappers, e.g. under pytest)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        if threads is not None:
            sys.modules["torch"].set_num_threads(threads)  # OMP_NUM_THREADS is read only when torch loads
        if argv[1] == "-m":
            sys.argv = [argv[2], *argv[3:]]
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv[1:]
            runpy.run_path(argv[1], run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001  (the child reports any failure through its exit code and log)
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def wait(pid: int, timeout: float) -> int | None:
    """Exit code of child ``pid``, or None when it is still running after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= end:
            return None
        time.sleep(0.1)


def stop(pid: int) -> None:
    """Stop child ``pid`` and everything in its session: SIGTERM, then SIGKILL after 10 s; reaps it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        if wait(pid, 10.0) is not None:
            return
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
