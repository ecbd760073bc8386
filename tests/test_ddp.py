"""2-process DDP on CPU (gloo) through conf/trainer/ddp.yaml: resident shards, equal steps, synced weights."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# Run as a script: Lightning's ddp strategy re-launches sys.argv for rank 1, which must not be pytest.
SCRIPT = textwrap.dedent('''
    import json, sys
    import pytorch_lightning as pl, torch, torch.nn as nn
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from gdws.data import SyntheticDataModule
    from gdws.train import PGDTraining, accelerator_options

    out, repo = sys.argv[1], sys.argv[2]
    with initialize_config_dir(config_dir=repo + "/conf", version_base="1.3"):
        cfg = compose("config", overrides=["trainer=ddp", "train.epochs=1", "device=cpu"])

    class Record(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            self.indices = trainer.train_dataloader.sampler.indices().tolist()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    init = torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()
    module = PGDTraining(model, epochs=1, steps=2, val_attack_steps=2)
    dm = SyntheticDataModule(num_train=160, num_test=32, val_size=32, batch_size=16, eval_batch_size=16)
    rec = Record()
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, callbacks=[rec],
                          **accelerator_options(torch.device("cpu"), int(cfg.trainer.devices)))
    trainer.fit(module, datamodule=dm)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    json.dump({"rank": trainer.global_rank, "world": trainer.world_size, "step": trainer.global_step,
               "indices": rec.indices, "params": flat.tolist(), "init": init,
               "n_test": sum(y.shape[0] for _, y in dm.test_dataloader()),
               "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()}},
              open(f"{out}/rank{trainer.global_rank}.json", "w"))
    # Tear the gloo group down before exit: left to interpreter shutdown, its threads can abort the process.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
''')


@pytest.mark.slow  # two processes all-reducing over gloo (~20 s); the sharding itself in-process: test_data.py
def test_ddp_two_processes_on_cpu(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), str(REPO)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and {r0["rank"], r1["rank"]} == {0, 1}
    # 128 training images, 64 per rank, batch 16 -> 4 steps on each rank.
    assert r0["step"] == r1["step"] == 4
    assert len(r0["indices"]) == len(r1["indices"]) == 64
    assert not set(r0["indices"]) & set(r1["indices"]) and len(set(r0["indices"]) | set(r1["indices"])) == 128
    # Gradients were all-reduced: both ranks end with the same weights, which did move.
    assert torch.allclose(torch.tensor(r0["params"]), torch.tensor(r1["params"]), atol=1e-6)
    assert not torch.allclose(torch.tensor(r0["params"]), torch.tensor(r0["init"]))
    assert 0 <= r0["metrics"]["val/acc_rob"] <= r0["metrics"]["val/acc_nat"] <= 1
    assert r0["metrics"]["val/acc_nat"] == r1["metrics"]["val/acc_nat"]
    assert r0["n_test"] == r1["n_test"] == 32  # evaluation after a DDP fit sees the whole test split  # sync_dist: one value on both ranks
