"""Weight files in parts: splitting into pieces the device tool returns, joining them back with a hash check,
and the limits on what comes back from the GPU machine (files under $OUT)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

MiB = 2 ** 20
MAX_FILES = 8              # files returned from $OUT in all
MAX_FILE_BYTES = 16 * MiB  # per file
MAX_TOTAL_BYTES = 64 * MiB  # all files together


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
               reserve_bytes: int = 0) -> str | None:
    """Why files of sizes ``incoming`` cannot join ``out_dir`` within the return limits (None: they can).

    ``reserve_files``/``reserve_bytes`` are kept for files still to be written (the report files).
    """
    present = [p.stat().st_size for p in Path(out_dir).iterdir() if p.is_file()] if Path(out_dir).is_dir() else []
    if any(size > MAX_FILE_BYTES for size in incoming):
        return f"a file over {MAX_FILE_BYTES // MiB} MiB"
    files = len(present) + len(incoming) + reserve_files
    if files > MAX_FILES:
        return f"{files} files would exceed the {MAX_FILES} returned"
    total = sum(present) + sum(incoming) + reserve_bytes
    if total > MAX_TOTAL_BYTES:
        return f"{total / MiB:.1f} MiB would exceed the {MAX_TOTAL_BYTES // MiB} MiB returned"
    return None
