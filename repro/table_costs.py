"""Estimated GPU time of the paper's tables at paper scale (``python scripts/run_table.py NAME``), from the cost
model of :mod:`repro.costs`: per network its adversarial training, the pruning phases of its rows and the rows'
PGD-100 evaluations on the 10,000 test images.

    python -m repro.table_costs          # minutes per network and per table, at the H100 rates (estimates)

Work per training image (F: one forward pass): PGD-10 AT 23F (10 attack steps of 2F, then 3F to train),
TRADES 27F (the attack's clean forward, 10 steps of 2F, then forward and backward on clean and adversarial
images). The rates assume bf16 autocast and channels_last (``trainer=gpu train.amp=true train.channels_last=true``).
"""
from __future__ import annotations

from dataclasses import dataclass

from repro.costs import GMACS, H100, Rates, pgd_f

TRAIN_F = {"pgd": 23, "trades": 27}
N_TRAIN, N_VAL, N_TEST = 49_000, 1_000, 10_000   # CIFAR-10 with the default held-out validation split
EPOCHS, VAL_STEPS, EVAL_STEPS = 200, 10, 100      # conf/train/base.yaml, conf/attack/pgd.yaml


@dataclass(frozen=True)
class NetworkWork:
    """One network of a table: its recipe, the extra training epochs of its pruned rows, and its row count."""

    network: str
    recipe: str
    prune_epochs: int   # ADMM: 200 + 200 retraining per ratio; HYDRA: 20 + 100 fine-tuning per ratio
    rows: int


TABLES = {
    "admm": (NetworkWork("vgg16", "pgd", 3 * 400, 5), NetworkWork("preact_resnet18", "pgd", 3 * 400, 5)),
    "hydra": (NetworkWork("vgg16_hydra", "trades", 3 * 120, 8),),
    "lightweight": (NetworkWork("preact_resnet18", "pgd", 0, 1), NetworkWork("vgg16", "pgd", 0, 1),
                    NetworkWork("mobilenet_v1", "pgd", 0, 1), NetworkWork("mobilenet_v2", "pgd", 0, 1),
                    NetworkWork("resnet18_dws", "pgd", 0, 1), NetworkWork("resnet20_w40", "pgd", 0, 1)),
    "robnet": (NetworkWork("robnet_free", "pgd", 0, 1), NetworkWork("preact_resnet50", "pgd", 0, 2),
               NetworkWork("wrn28_4", "pgd", 0, 2)),
}


def network_minutes(work: NetworkWork, rates: Rates = H100) -> dict[str, float]:
    """Estimated minutes of one network's share of a table: training, pruning phases, row evaluations."""
    f = 2e9 * GMACS[work.network]
    epoch = (N_TRAIN * TRAIN_F[work.recipe] + N_VAL * pgd_f(VAL_STEPS)) * f / rates.train_flops
    evaluation = work.rows * N_TEST * pgd_f(EVAL_STEPS) * f / rates.eval_flops
    return {"train": EPOCHS * epoch / 60, "prune": work.prune_epochs * epoch / 60, "rows": evaluation / 60}


def report(rates: Rates = H100) -> str:
    """Per table and network the estimated minutes, as printed by ``python -m repro.table_costs``."""
    lines = [f"estimated minutes on one GPU ({rates.name}); a network shared by two tables trains once"]
    for table, works in TABLES.items():
        total = 0.0
        for work in works:
            m = network_minutes(work, rates)
            total += sum(m.values())
            lines.append(f"{table:<12}{work.network:<17}train {m['train']:6.0f}  prune {m['prune']:6.0f}  "
                         f"rows {m['rows']:4.0f} ({work.rows})")
        lines.append(f"{table:<12}{'all':<17}{total:6.0f} min = {total / 60:.1f} h")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
