"""Writing the plots of gdws.tables: one place for the file format and resolution."""
from __future__ import annotations

from pathlib import Path


def save_figure(fig, out: Path) -> Path:
    """Lay out ``fig``, write it to ``out`` (PNG at 150 dpi, its folder created) and close it; returns ``out``."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out
