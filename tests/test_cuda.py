"""What runs only on a GPU: mixed precision with the attack-aware autocast, channels_last training, GPU-resident
data, optimize_for_inference and CUDA-graph replay on CUDA. Marked ``cuda``; every test skips without CUDA.

    python -m pytest -m cuda tests/test_cuda.py        (phase 2 of experiments/reproduce_gpu.sh)
"""
from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from gdws.data.synthetic import SyntheticDataModule
from gdws.eval import evaluate
from gdws.eval.attacks import PGD
from gdws.models import create_model
from gdws.train import FastTraining, accelerator_options
from gdws.train.attacks import AttackView, amp_dtype

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 comparisons without TF32 (the default lets cuDNN convolutions round to 10-bit mantissas)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def small_net(name: str = "vgg16") -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, width=0.125)


def test_autocast_dtype_is_bf16_and_attack_gradient_keeps_its_sign():
    assert amp_dtype(CUDA) == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    model = small_net().to(CUDA).eval()
    x = torch.rand(16, 3, 32, 32, device=CUDA, requires_grad=True)
    y = torch.randint(0, 10, (16,), device=CUDA)
    logits = AttackView(model, amp_dtype(CUDA))(x)
    assert logits.dtype == torch.float32  # the attack's loss is computed in fp32
    g_amp = torch.autograd.grad(F.cross_entropy(logits, y), x)[0]
    g_32 = torch.autograd.grad(F.cross_entropy(AttackView(model)(x), y), x)[0]
    assert g_amp.ne(0).float().mean() > 0.95
    assert (g_amp.sign() == g_32.sign()).float().mean() > 0.85


def test_fast_training_with_amp_and_channels_last_on_resident_data():
    model = small_net("preact_resnet18")
    before = [p.detach().clone() for p in model.parameters()]
    module = FastTraining(model, epochs=1, val_attack_steps=2, amp=True, channels_last=True, lr=0.05)
    data = SyntheticDataModule(num_train=320, num_test=64, batch_size=64, val_size=64, resident=True)
    trainer = pl.Trainer(**accelerator_options(CUDA), max_epochs=1, limit_train_batches=3, limit_val_batches=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, inference_mode=False)
    trainer.fit(module, datamodule=data)
    m = trainer.callback_metrics
    assert trainer.global_step == 3 and math.isfinite(float(m["train/loss"]))
    assert 0 <= float(m["val/acc_rob"]) <= float(m["val/acc_nat"]) <= 1
    params = list(model.parameters())
    assert all(p.is_cuda and p.dtype == torch.float32 and torch.isfinite(p).all() for p in params)
    assert all(not torch.equal(b.to(CUDA), p) for b, p in zip(before, params))
    conv = next(mod for mod in model.modules() if isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_resident_batches_live_on_the_gpu():
    data = SyntheticDataModule(num_train=256, num_test=128, batch_size=64, eval_batch_size=64, val_size=0)
    data.device = CUDA
    x, y = next(iter(data.train_dataloader()))
    assert x.is_cuda and y.is_cuda and x.dtype == torch.float32 and x.shape == (64, 3, 32, 32)
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    test = list(data.test_dataloader())
    assert all(b[0].is_cuda for b in test) and sum(len(b[1]) for b in test) == 128


def test_pgd_evaluation_on_cuda():
    data = SyntheticDataModule(num_train=128, num_test=64, eval_batch_size=32, val_size=0)
    data.device = CUDA
    model = small_net().to(CUDA)
    attack = PGD(eps=8 / 255, step_size=2 / 255, steps=3)
    result = evaluate(model.eval(), data.test_dataloader(), attack, progress=False)
    assert result["n_eval"] == 64 and 0 <= result["A_rob"] <= result["A_nat"] <= 100


def gdws_net() -> torch.nn.Module:
    import gdws

    model = small_net().eval()
    converted, report = gdws.convert(model, macs_ratio=1.5)
    assert report["converted"].any()
    return converted.to(CUDA).eval()


def test_optimize_for_inference_on_cuda_keeps_the_function():
    import gdws

    model = gdws_net()
    x = torch.rand(8, 3, 32, 32, device=CUDA)
    fast = gdws.optimize_for_inference(model, x, device=CUDA, min_run_time=0.01)
    with torch.no_grad():
        ref, out = model(x), fast(x)
    assert out.is_cuda
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)


def test_cuda_graph_replay_matches_eager_and_is_timed():
    from repro.perf import GraphedForward
    from gdws.metrics.fps import measure_fps

    model = gdws_net()
    x = torch.rand(4, 3, 32, 32, device=CUDA)
    graphed = GraphedForward(model, x)
    other = torch.rand_like(x)
    with torch.inference_mode():
        ref, out = model(other), graphed(other).clone()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert measure_fps(graphed, batch_size=4, device=CUDA, warmup=2, min_run_time=0.05)["fps"] > 0
