"""Measured latency of one conv layer as a GDWS layer, against G, cached on disk per (device, layer shape).

A table holds, for a grid of G values, the median seconds of the layer's fastest G-only-dependent exact form
(straightforward or straightforward_cl: gather + depthwise groups=G + 1x1, whose cost depends on G and the
shapes, not on how G is spread over channels; `zero` at G = 0), and the seconds of the dense conv (dense or
dense_cl). Other forms (grouped, stacked, ...) depend on the g histogram; `optimize_for_inference` may still pick
them afterwards, which can only make the converted layer faster than its table says. Weights are random: the
latency of these dense kernels does not depend on the values.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from gdws.core.layer import GDWSConv2d
from gdws.fast.candidates import build_forms
from gdws.fast.runtimes import runtime_version
from gdws.fast.select import EXPORT_FORMS, SIMPLICITY, compiled
from gdws.fast.spec import GDWSSpec
from gdws.fast.timing import choose_within_noise, time_rounds
from gdws.utils import device_name

TABLE_FORMS = ("zero", "straightforward", "straightforward_cl")
# fractions of the MAC-neutral G (where GDWS and dense MACs are equal): GDWS pays off well below it on CPUs
G_FRACTIONS = (1 / 32, 1 / 16, 1 / 10, 1 / 8, 1 / 6, 1 / 5, 1 / 4, 1 / 3, 0.4, 0.5, 0.65, 0.8, 1.0)


@dataclass(frozen=True)
class LayerShape:
    """Everything a layer's latency depends on besides the device: geometry, input shape and dtype."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]
    padding_mode: str
    bias: bool
    input_shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, conv: nn.Conv2d, x: torch.Tensor) -> "LayerShape":
        """The shape of ``conv`` applied to input ``x``."""
        padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
        return cls(conv.in_channels, conv.out_channels, tuple(conv.kernel_size), tuple(conv.stride), padding,
                   tuple(conv.dilation), conv.padding_mode, conv.bias is not None, tuple(x.shape), str(x.dtype))

    @property
    def max_g(self) -> int:
        """Largest useful G: C * min(M, kh*kw) (every component of every channel)."""
        return self.in_channels * min(self.out_channels, self.kernel_size[0] * self.kernel_size[1])

    def grid(self) -> list[int]:
        """G values to measure: 0 and fractions G_FRACTIONS of the MAC-neutral G (capped at max_g)."""
        kk = self.kernel_size[0] * self.kernel_size[1]
        neutral = self.in_channels * self.out_channels * kk / (kk + self.out_channels)
        return sorted({0, *(min(self.max_g, max(1, round(f * neutral))) for f in G_FRACTIONS)})


def spread_g(channels: int, total: int, rank: int) -> torch.Tensor:
    """g with sum ``total`` spread as evenly as possible over ``channels`` (each <= rank)."""
    g = torch.full((channels,), total // channels, dtype=torch.long)
    g[: total % channels] += 1
    return g.clamp(max=rank)


def default_cache_dir() -> Path:
    """$GDWS_LATENCY_CACHE, else $XDG_CACHE_HOME/gdws/latency, else ~/.cache/gdws/latency."""
    if os.environ.get("GDWS_LATENCY_CACHE"):
        return Path(os.environ["GDWS_LATENCY_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gdws" / "latency"


def _cache_file(cache_dir: Path, shape: LayerShape, device: torch.device, runtime: str = "torch") -> Path:
    # the device part names what changes kernel speed: the processor, the thread count, the torch build and the
    # runtime the layers are timed on
    dev = f"{device_name(device)}|{device.type}|threads={torch.get_num_threads()}|torch={torch.__version__}"
    if runtime != "torch":
        dev += f"|{runtime}={runtime_version(runtime)}"
    key = json.dumps({"device": dev, **asdict(shape)}, sort_keys=True)
    dev_dir = "".join(ch if ch.isalnum() else "_" for ch in dev)[:80]
    return cache_dir / dev_dir / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.json"


def _layer_at(shape: LayerShape, g: torch.Tensor, device: torch.device) -> GDWSSpec:
    """A random-weight GDWS layer of ``shape`` with allocation g, as a spec on ``device``."""
    dtype = getattr(torch, shape.dtype.replace("torch.", ""))
    layer = GDWSConv2d(shape.in_channels, shape.out_channels, shape.kernel_size, g, shape.stride, shape.padding,
                       shape.dilation, shape.bias, shape.padding_mode, device=device, dtype=dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    return GDWSSpec.from_layer(layer)


def measure_table(shape: LayerShape, device: torch.device, min_run_time: float = 0.05, rounds: int = 5,
                  runtime: str = "torch") -> dict:
    """Time the layer at every G of ``shape.grid()``: {'G', 'seconds', 'form', 'dense_seconds', 'dense_form'}.

    runtime: what the forms are compiled for and timed on (gdws.fast.runtimes; not torch: no channels_last forms)."""
    dtype = getattr(torch, shape.dtype.replace("torch.", ""))
    x = torch.randn(shape.input_shape, device=device, dtype=dtype)
    rank = min(shape.out_channels, shape.kernel_size[0] * shape.kernel_size[1])
    table: dict = {"G": [], "seconds": [], "form": []}
    for G in shape.grid():
        spec = _layer_at(shape, spread_g(shape.in_channels, G, rank), device)
        forms = build_forms(spec, include=TABLE_FORMS + (("dense", "dense_cl") if G == shape.grid()[-1] else ()))
        if runtime != "torch":
            forms = compiled({k: v for k, v in forms.items() if k in EXPORT_FORMS}, x, runtime)
        samples = time_rounds(forms, x, min_run_time * len(forms), rounds)
        dense = {k: v for k, v in samples.items() if k.startswith("dense")}
        if dense:  # measured once, beside the largest G (its weights do not matter)
            best = choose_within_noise(dense, SIMPLICITY, 0.0)
            table["dense_seconds"], table["dense_form"] = best.medians[best.name], best.name
        choice = choose_within_noise({k: v for k, v in samples.items() if k in TABLE_FORMS}, SIMPLICITY, 0.0)
        table["G"].append(G)
        table["seconds"].append(choice.medians[choice.name])
        table["form"].append(choice.name)
    return table


def latency_table(shape: LayerShape, device: torch.device | str, cache_dir: str | os.PathLike | None = None,
                  min_run_time: float = 0.05, runtime: str = "torch") -> dict:
    """`measure_table` for ``shape`` on ``device``, read from / written to ``cache_dir`` (default_cache_dir()).

    cache_dir=False measures without caching. The cache is keyed by the device (processor or GPU name, threads,
    torch version, runtime and its version) and the layer shape, so a sweep over conversion settings measures each
    shape once.
    """
    device = torch.device(device)
    path = None if cache_dir is False else _cache_file(Path(cache_dir or default_cache_dir()), shape, device, runtime)
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    table = measure_table(shape, device, min_run_time, runtime=runtime)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**table, "shape": asdict(shape)}))
        tmp.replace(path)  # atomic: parallel sweep jobs never read a half-written table
    return table
