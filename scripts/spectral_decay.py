"""Per-layer spectral decay of a training run: the share of sigma^2 in the top 1/2/4 components, at
initialisation and after each logged epoch (read from the spectra.csv that training writes).

    python scripts/spectral_decay.py checkpoints/cifar10-vgg16-w0.5-fgsm_rs-e12-<hash> [--out results/cpu/spectra_vgg16.md]

GDWS gains MACs at small error only where this share is high (few components carry the energy); at random
init it is close to k/9 for 3x3 kernels.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from gdws.tables.render import markdown


def decay_table(spectra_csv: Path, top: str = "top4") -> pd.DataFrame:
    """Layers x logged epochs of the ``top`` share, plus the change from init to the last epoch."""
    df = pd.read_csv(spectra_csv)
    table = df.pivot_table(index="layer", columns="epoch", values=top, sort=False)
    table.columns = [f"epoch {c}" if c else "init" for c in table.columns]
    table["change"] = table.iloc[:, -1] - table["init"]
    return table.round(3).reset_index()


def main() -> None:
    """Print (and optionally write) the decay tables of one checkpoint folder."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write the tables as Markdown here")
    args = parser.parse_args()
    parts = [f"# Spectral decay of `{args.ckpt_dir.name}`\n"]
    for top in ("top1", "top4"):
        parts.append(f"\nMean share of sigma^2 in the {top[3:]} largest components per input channel:\n\n"
                     + markdown(decay_table(args.ckpt_dir / "spectra.csv", top)) + "\n")
    text = "".join(parts)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
