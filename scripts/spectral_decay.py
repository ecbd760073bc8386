"""Per-layer spectral decay of a training run: the share of sigma^2 in the top 1/2/4 components, at
initialisation and after each logged epoch (read from the spectra.csv that training writes).

    python scripts/spectral_decay.py checkpoints/cifar10-vgg16-w0.5-fgsm_rs-e12-<hash> [--out results/cpu/spectra_vgg16.md]
    python scripts/spectral_decay.py --weights vgg16:0.5:A.pt --weights vgg16:1.0:B.pt [--out FILE]

The second form compares trained weight files (MODEL:WIDTH:FILE) layer by layer, beside random init at each width.

GDWS gains MACs at small error only where this share is high (few components carry the energy); at random
init it is close to k/9 for 3x3 kernels.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from gdws.models import create_model, load_checkpoint
from gdws.tables.render import markdown
from gdws.train.spectra import energy_shares


def decay_table(spectra_csv: Path, top: str = "top4") -> pd.DataFrame:
    """Layers x logged epochs of the ``top`` share, plus the change from init to the last epoch."""
    df = pd.read_csv(spectra_csv)
    table = df.pivot_table(index="layer", columns="epoch", values=top, sort=False)
    table.columns = [f"epoch {c}" if c else "init" for c in table.columns]
    table["change"] = table.iloc[:, -1] - table["init"]
    return table.round(3).reset_index()


def compare_table(specs: list[str], top: int) -> pd.DataFrame:
    """Layers x networks (MODEL:WIDTH:FILE each, plus random init at that width, seed 0) of the top-``top`` share."""
    columns = {}
    for spec in specs:
        name, width, path = spec.split(":", 2)
        torch.manual_seed(0)
        init = create_model(name, width=float(width))
        columns[f"{name} w{width} init"] = {k: v[top] for k, v in energy_shares(init).items()}
        trained = load_checkpoint(create_model(name, width=float(width)), path)
        columns[f"{name} w{width} {Path(path).name}"] = {k: v[top] for k, v in energy_shares(trained).items()}
    return pd.DataFrame(columns).round(3).rename_axis("layer").reset_index()


def main() -> None:
    """Print (and optionally write) the decay tables of one checkpoint folder, or compare trained weight files."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt_dir", type=Path, nargs="?", help="a training's checkpoint folder (its spectra.csv)")
    parser.add_argument("--weights", action="append", default=[], metavar="MODEL:WIDTH:FILE",
                        help="compare these trained files instead (repeat the option)")
    parser.add_argument("--out", type=Path, default=None, help="write the tables as Markdown here")
    args = parser.parse_args()
    if (args.ckpt_dir is None) == (not args.weights):
        parser.error("give either a checkpoint folder or --weights MODEL:WIDTH:FILE (one or more), not both")
    if args.weights:
        parts = ["# Spectral decay of trained networks against random init\n"]
        for top in (1, 4):
            parts.append(f"\nMean share of sigma^2 in the {top} largest components per input channel:\n\n"
                         + markdown(compare_table(args.weights, top)) + "\n")
    else:
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
