"""Weight files in parts: splitting into pieces small enough to be returned, joining them back with a hash check,
and the limits on what the run may leave in its output folder (options of ``python -m repro``)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

MiB = 2 ** 20


@dataclass(frozen=True)
class Limits:
    """What the output folder may hold in all: where results travel back through a channel with limits (the
    defaults: a device tool returning at most 8 files of 16 MiB, 64 MiB together). Weights that would break
    them stay behind, and the report says so."""

    max_files: int = 8
    max_file_bytes: int = 16 * MiB
    max_total_bytes: int = 64 * MiB


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def part_names(name: str, size: int, part_bytes: int) -> list[str]:
    """File names of the parts of a ``size``-byte file called ``name`` (``name.part0``, ``name.part1``, ...)."""
    if part_bytes <= 0:
        raise ValueError(f"part_bytes must be positive, got {part_bytes}")
    count = max(1, -(-size // part_bytes))
    return [f"{name}.part{i}" for i in range(count)]


def split_file(path: str | os.PathLike, dest: str | os.PathLike, part_bytes: int) -> list[Path]:
    """Write ``path`` as consecutive parts of at most ``part_bytes`` bytes into folder ``dest``; returns them."""
    path, dest = Path(path), Path(dest)
    names = part_names(path.name, path.stat().st_size, part_bytes)
    out = []
    with open(path, "rb") as f:
        for name in names:
            target = dest / name
            target.write_bytes(f.read(part_bytes))
            out.append(target)
    return out


def join_parts(parts: list[str | os.PathLike], dest: str | os.PathLike, sha256: str) -> Path:
    """Concatenate ``parts`` (in order) into ``dest`` and check the result's sha256.

    Raises FileNotFoundError naming missing parts, FileExistsError when ``dest`` exists, and ValueError on a
    hash mismatch; in every failure nothing is left at ``dest``.
    """
    dest = Path(dest)
    missing = [str(p) for p in parts if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"missing weight parts: {', '.join(missing)}")
    if dest.exists():
        raise FileExistsError(f"{dest} exists already; remove it or pick another output file")
    tmp = dest.with_name(dest.name + ".joining")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                data = Path(part).read_bytes()
                digest.update(data)
                out.write(data)
        if digest.hexdigest() != sha256:
            raise ValueError(f"sha256 of the joined parts is {digest.hexdigest()}, expected {sha256}: a part is "
                             "missing, truncated or from another run")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def out_budget(out_dir: str | os.PathLike, incoming: list[int], reserve_files: int = 0,
               reserve_bytes: int = 0, limits: Limits = Limits()) -> str | None:
    """Why files of sizes ``incoming`` cannot join ``out_dir`` within ``limits`` (None: they can).

    ``reserve_files``/``reserve_bytes`` are kept for files still to be written (the report files).
    """
    present = [p.stat().st_size for p in Path(out_dir).iterdir() if p.is_file()] if Path(out_dir).is_dir() else []
    if any(size > limits.max_file_bytes for size in incoming):
        return f"a file over {limits.max_file_bytes / MiB:g} MiB"
    files = len(present) + len(incoming) + reserve_files
    if files > limits.max_files:
        return f"{files} files would exceed the {limits.max_files} returned"
    total = sum(present) + sum(incoming) + reserve_bytes
    if total > limits.max_total_bytes:
        return f"{total / MiB:.1f} MiB would exceed the {limits.max_total_bytes / MiB:g} MiB returned"
    return None
