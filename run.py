"""Entry point: compose the Hydra config and run one experiment (or a sweep with -m).

    python run.py model=vgg16 gdws.beta=0.5
    python run.py experiment=smoke data=synthetic
    python run.py -m experiment=table_admm

A refused run (gdws.errors: a bad setting, missing data or weights, a CPU training estimated at days) ends with
its message alone on stderr and exit code 1, and stops a sweep; any other error is a bug and shows its
traceback. HYDRA_FULL_ERROR=1 shows the traceback of a refusal too.
"""
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from gdws.errors import refusal_in
from gdws.pipeline.constraint import with_typed_constraint

# Results, checkpoints and outputs live in the project folder wherever run.py is started from.
os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Run the pipeline for the composed ``cfg`` (one Hydra job)."""
    # imported here: `--help` and `--cfg job` need neither torch nor the pipeline
    from gdws.pipeline.validate import validate

    try:
        validate(cfg)  # again inside run(): here it refuses a bad setting before Lightning is even imported
        from gdws.pipeline import run

        run(cfg)
    except Exception as err:
        refused = refusal_in(err)
        if refused is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise  # Hydra prints the traceback (all of it with HYDRA_FULL_ERROR=1)
        # SystemExit passes Hydra's handler untouched: Python prints the message alone and exits with 1
        raise SystemExit(str(refused)) from None


if __name__ == "__main__":
    # A GDWS constraint typed here replaces the one the configs set: the rule is applied to the command line,
    # so that Hydra composes (and saves in .hydra/config.yaml) the one constraint that runs.
    sys.argv[1:] = with_typed_constraint(sys.argv[1:])
    main()
