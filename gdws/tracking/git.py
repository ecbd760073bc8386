"""The git commit of the code that produced a result."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(repo_dir: str | Path = ".") -> str:
    """Short hash of HEAD in ``repo_dir`` with a ``-dirty`` suffix for uncommitted changes; '' outside git."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        return ""  # not a repository, git missing, or no commit yet
    try:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, RuntimeError, subprocess.TimeoutExpired):
        dirty = False
    return commit + ("-dirty" if dirty else "")
