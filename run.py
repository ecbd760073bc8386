"""Entry point: compose the Hydra config and run one experiment (or a sweep with -m).

    python run.py model=vgg16 gdws.beta=0.5
    python run.py experiment=smoke data=synthetic
    python run.py -m experiment=table_admm
"""
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from gdws.pipeline.constraint import with_typed_constraint

# Results, checkpoints and outputs live in the project folder wherever run.py is started from.
os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Run the pipeline for the composed ``cfg`` (one Hydra job)."""
    from gdws.pipeline import run  # imported here: `--help` and `--cfg job` need neither Lightning nor the pipeline

    run(cfg)


if __name__ == "__main__":
    # A GDWS constraint typed here replaces the one the configs set: the rule is applied to the command line,
    # so that Hydra composes (and saves in .hydra/config.yaml) the one constraint that runs.
    sys.argv[1:] = with_typed_constraint(sys.argv[1:])
    main()
