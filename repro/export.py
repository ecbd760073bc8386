"""Step program of the reproduction run: a finished training's best checkpoint as a half-precision state_dict.

    python -m repro.export CKPT_DIR NAME DEST_DIR

writes ``DEST_DIR/NAME_fp16.pt`` (the network's own keys, floating tensors in float16) and ``DEST_DIR/NAME.json``
(file, bytes, sha256, the checkpoint it came from). ``run.py weights.path=NAME_fp16.pt model=NAME`` loads it
(load_state_dict casts back to the model's float32).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from repro.parts import sha256_file

LIGHTNING_PREFIX = "model."  # AdversarialTraining keeps the network as self.model


def half_state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The network's state_dict inside a training checkpoint, floating tensors cast to float16."""
    from gdws.models.checkpoint import extract_state_dict

    state = extract_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), checkpoint)
    foreign = [k for k in state if not k.startswith(LIGHTNING_PREFIX)]
    if foreign:
        raise ValueError(f"{checkpoint} holds keys outside the trained network ({foreign[:3]}); expected a "
                         "checkpoint written by run.py stage=train")
    return {k[len(LIGHTNING_PREFIX):]: v.half() if v.is_floating_point() else v for k, v in state.items()}


def export(ckpt_dir: Path, name: str, dest: Path) -> dict:
    """Write ``dest/<name>_fp16.pt`` from the finished training in ``ckpt_dir``; returns its manifest."""
    from gdws.pipeline.weights import finished_checkpoint

    best = finished_checkpoint(ckpt_dir)
    if best is None:
        raise FileNotFoundError(f"{ckpt_dir} holds no finished training (done.json and its checkpoint)")
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{name}_fp16.pt"
    torch.save(half_state_dict(best), out)
    manifest = {"file": out.name, "bytes": out.stat().st_size, "sha256": sha256_file(out), "checkpoint": best.name,
                "done": json.loads((ckpt_dir / "done.json").read_text())}
    (dest / f"{name}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> None:
    """Command line: CKPT_DIR NAME DEST_DIR."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt_dir", type=Path)
    parser.add_argument("name")
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    print(json.dumps(export(args.ckpt_dir, args.name, args.dest)))


if __name__ == "__main__":
    main()
