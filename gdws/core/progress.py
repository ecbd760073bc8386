"""A one-line progress bar on stderr (the core depends on torch and pandas only, so no tqdm here)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``desc: k/L [bar] elapsed, ETA (note)``, rewritten in place; silent when ``enabled`` is False.

    Used as a context manager: the line ends (newline) on exit. The ETA assumes the remaining steps take the
    mean time of the finished ones.
    """

    def __init__(self, total: int, desc: str, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled and total > 0
        self.stream = stream or sys.stderr
        self.done, self.note, self.start = 0, "", time.perf_counter()

    def __enter__(self) -> "Progress":
        self._draw()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def set_note(self, note: str) -> None:
        """What the current step is (e.g. the layer's name)."""
        self.note = note
        self._draw()

    def update(self, steps: int = 1) -> None:
        """``steps`` more steps finished."""
        self.done += steps
        self._draw()

    def line(self) -> str:
        """The current line, e.g. 'GDWS refit: 3/14 [#####.........] 12 s, ETA 44 s (layer2.0.conv1)'."""
        elapsed = time.perf_counter() - self.start
        filled = int(20 * self.done / self.total) if self.total else 20
        eta = f", ETA {elapsed / self.done * (self.total - self.done):.0f} s" if self.done else ""
        note = f" ({self.note})" if self.note else ""
        return f"{self.desc}: {self.done}/{self.total} [{'#' * filled}{'.' * (20 - filled)}] {elapsed:.0f} s{eta}{note}"

    def _draw(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line() + "\x1b[K")  # \x1b[K: clear what a longer line left behind
            self.stream.flush()
