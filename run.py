"""Entry point: compose the Hydra config and run one experiment (or a sweep with -m).

    python run.py model=vgg16 gdws.beta=0.5
    python run.py experiment=smoke data=synthetic
    python run.py -m experiment=table_admm
"""
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

# Results, checkpoints and outputs live in the project folder wherever run.py is started from.
os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Run the pipeline for the composed ``cfg`` (one Hydra job)."""
    from gdws.pipeline import run  # imported here so that `--help`/`--cfg job` stay fast

    run(cfg)


if __name__ == "__main__":
    main()
