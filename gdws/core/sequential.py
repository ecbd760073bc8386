"""The refit of a whole network, piece by piece on cached activations: one forward pass of each network.

The layer-by-layer refit (gdws.core.refit) runs the calibration set through both networks up to each converted
layer, so its cost grows with the square of the depth. Here the forward is cut into pieces instead, and the
values that cross each cut are kept for the whole calibration set, so every module of each network runs once
per image, however deep the network.

How the forward is cut. torch.fx traces the original model into a graph of calls (convs, BatchNorm, activations,
additions, poolings, ...), which is cut right before and right after each converted conv's call. A piece is a
GraphModule that takes the values live at its start (made before it, used after it: a residual block's shortcut
input travels beside the main path) and returns those live at its end. Pieces call the model's own modules by
name, so the same cut built on the converted copy (where the converted convs are GDWSConv2d modules of the same
names) runs the converted network. A cut is accepted only when chaining its pieces on calibration images gives
model(x) and converted(x); an untraceable forward, a conv called twice, or a mismatch gives None, and the refit
falls back to the layer-by-layer path.

The refit. Per batch, the live values of both networks at the current cut are held (`Cache`). At a converted
conv's piece the original piece runs first (its output holds the conv's output y, the target); each batch's
(converted input, y) is added to the layer's normal equations (refit.PointwiseSystem, or
refit_alternating.PatchSystem with refit_rounds), the layer is solved, then the converted piece runs on the
refit layer. Results equal the layer-by-layer path's: the same inputs and targets, accumulated in the same order.
Memory: the values at two cuts (start and end of a piece) of both networks for all N images, plus one batch's
working memory, both measured on the traced graph; `chunk_size` picks the batch within the memory budget.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from .calibration import batches
from .discovery import eval_mode, model_device_dtype
from .layer import GDWSConv2d
from .progress import Progress
from .refit import PointwiseSystem, RefitStats, refit_layer
from .refit_alternating import JOINT_LIMIT, PatchSystem, refit_layer_alternating
from .residual_target import inverse_scale, shortcut_of
from .settings import GIB, CalibrationSettings

Cache = list[tuple]  # per batch, the values live at one cut


@dataclass
class Piece:
    """One piece of the cut forward, built on both networks; ``layer`` names the conv it calls (a piece of its
    own, with the conv's input at ``conv_input`` among its arguments and its output at ``conv_output`` among
    its results), None for a piece between converted convs."""

    original: fx.GraphModule
    converted: fx.GraphModule
    layer: str | None = None
    conv_input: int = 0
    conv_output: int = 0
    positions: int = 1       # output positions H' W' of its conv
    shortcut: tuple[fx.GraphModule, fx.GraphModule] | None = None  # its residual block's shortcut value, if any
    inv_scale: Tensor | None = None  # 1 / the BatchNorm scale between the conv and the shortcut's add (ones if none)
    in_bytes: float = 0.0    # per image: the values at its start
    out_bytes: float = 0.0   # per image: the values at its end
    work_bytes: float = 0.0  # per image: every value it makes (an upper bound on what it holds at once)


def _live(nodes: list[fx.Node], pos: dict[fx.Node, int], c: int) -> list[fx.Node]:
    """Values made before position ``c`` and used at or after it (parameters read in forward are re-read)."""
    return [n for n in nodes[:c] if n.op != "get_attr" and any(pos[u] >= c for u in n.users)]


def _piece_graph(nodes: list[fx.Node], start: int, stop: int, live_in: list[fx.Node],
                 live_out: list[fx.Node]) -> fx.Graph:
    """The graph of nodes[start:stop]: arguments ``live_in``, results the tuple ``live_out`` (or, for the last
    piece, the 1-tuple of the model's output)."""
    g, env = fx.Graph(), {}
    for n in live_in:
        env[n] = g.placeholder(n.name)

    def arg(m: fx.Node) -> fx.Node:
        if m not in env:  # a parameter or buffer the forward reads: read again in this piece
            env[m] = g.node_copy(m)
        return env[m]

    for n in nodes[start:stop]:
        if n.op == "output":
            g.output((fx.map_arg(n.args[0], arg),))
        elif n.op != "get_attr":
            env[n] = g.node_copy(n, arg)
    if nodes[stop - 1].op != "output":
        g.output(tuple(env[n] for n in live_out))
    return g


class _Sizes(fx.Interpreter):
    """Runs the traced graph, recording each node's output bytes."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.bytes: dict[fx.Node, int] = {}
        self.shapes: dict[fx.Node, tuple] = {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        self.bytes[n] = out.nbytes if isinstance(out, Tensor) else 0
        self.shapes[n] = tuple(out.shape) if isinstance(out, Tensor) else ()
        return out


def _nbytes(values: tuple) -> int:
    return sum(v.nbytes for v in values if isinstance(v, Tensor))


def _chain(pieces: list[Piece], which: str, x: Tensor) -> list[tuple]:
    """The values at every cut when the pieces of one network run on ``x`` (the input first)."""
    values = [(x,)]
    for p in pieces:
        values.append(getattr(p, which)(*values[-1]))
    return values


def cut_forward(model: nn.Module, converted: nn.Module, names: list[str], check: Tensor,
                residual: bool = False) -> list[Piece] | None:
    """The pieces of ``model``'s forward cut around each conv in ``names`` (see the module docstring), checked on
    the images ``check`` against model(x) and converted(x); None where the forward cannot be cut so. ``residual``:
    also find each conv's residual shortcut (gdws.core.residual_target) where it has one."""
    try:
        with eval_mode(model):  # a forward reading self.training is traced as it runs in the refit
            graph = fx.Tracer().trace(model)
    except Exception:  # any untraceable forward (data-dependent control flow, ...): the layer-by-layer path
        return None
    nodes = list(graph.nodes)
    pos = {n: i for i, n in enumerate(nodes)}
    calls = [n for n in nodes if n.op == "call_module" and n.target in names]
    if sum(n.op == "placeholder" for n in nodes) != 1 or sorted(n.target for n in calls) != sorted(names) \
            or any(len(n.args) != 1 or n.kwargs or not isinstance(n.args[0], fx.Node) for n in calls):
        return None
    cuts = sorted({0, len(nodes)} | {pos[n] for n in calls} | {pos[n] + 1 for n in calls})
    layer_at = {pos[n]: n for n in calls}
    modules = dict(model.named_modules())
    pieces = []
    try:
        for start, stop in zip(cuts, cuts[1:]):
            live_in, live_out = _live(nodes, pos, start), _live(nodes, pos, stop)
            built = [fx.GraphModule(root, _piece_graph(nodes, start, stop, live_in, live_out))
                     for root in (model, converted)]
            call = layer_at.get(start) if stop == start + 1 else None
            piece = Piece(*built)
            if call is not None:
                piece.layer = str(call.target)
                piece.conv_input, piece.conv_output = live_in.index(call.args[0]), live_out.index(call)
                found = shortcut_of(call, live_in, pos, modules, set(names)) if residual else None
                if found is not None:
                    piece.shortcut = tuple(fx.GraphModule(root, found[0]) for root in (model, converted))
                    piece.inv_scale = inverse_scale(modules.get(found[1]), modules[piece.layer].out_channels)
            pieces.append(piece)
        with torch.no_grad(), eval_mode(model), eval_mode(converted):
            sizes = _Sizes(fx.GraphModule(model, graph))
            sizes.run(check)
            for which, net in (("original", model), ("converted", converted)):
                values = _chain(pieces, which, check)
                want = net(check)
                if not isinstance(want, Tensor) or not torch.allclose(values[-1][0], want, rtol=1e-4, atol=1e-5):
                    return None
            for p, before, after in zip(pieces, values, values[1:]):
                if p.shortcut is not None and p.shortcut[1](*before).shape != after[p.conv_output].shape:
                    p.shortcut = p.inv_scale = None  # a broadcast add: no per-position correction
    except Exception:  # a piece that does not build or run on its own: the layer-by-layer path
        return None
    n = check.shape[0]
    for p, (start, stop), before, after in zip(pieces, zip(cuts, cuts[1:]), values, values[1:]):
        p.in_bytes, p.out_bytes = _nbytes(before) / n, _nbytes(after) / n
        p.work_bytes = sum(sizes.bytes.get(m, 0) for m in nodes[start:stop]) / n
        if p.layer is not None:
            p.positions = math.prod(sizes.shapes[nodes[start]][2:])
    return pieces


def _refit_bytes(layer: GDWSConv2d, out_positions: int, rounds: int) -> tuple[float, float]:
    """(bytes per image, fixed bytes) that refitting ``layer`` holds beyond the cached values (refit.Moments): per
    image, its float32 depthwise input and output, their centred rows and a working copy, the target, its centred
    rows and two temporaries; fixed, the normal equations four times (the sums, one batch's product and its float64
    copy, the solve)."""
    g, m, kk = layer.num_intermediate, layer.out_channels, layer.kernel_size[0] * layer.kernel_size[1]
    ckk = layer.in_channels * kk
    per_image = out_positions * 4 * (g * (3 + layer.stride[0] * layer.stride[1]) + 4 * m)
    fixed = 4 * 8 * ((g + 1) ** 2 + (g + 1) * m)
    if rounds and g:  # the patches in float32, as float64 rows and centred; the target as float64 rows, centred
        per_image += out_positions * (20 * (ckk + 1) + 16 * m)
        joint = (g * kk) ** 2 if g * kk <= JOINT_LIMIT else g * ckk
        # U and V four times, the depthwise system, and A U grouped by channel (at most CKK rows)
        fixed += 4 * 8 * ((ckk + 1) ** 2 + m * (ckk + 1)) + 8 * joint + 8 * ckk * (ckk + 1)
    return per_image, fixed


def chunk_size(pieces: list[Piece], converted: nn.Module, samples: int, settings: CalibrationSettings) -> int:
    """The batch size of the sequential refit: settings.batch_size, or fewer images so that the caches of all
    ``samples`` images (both networks, start and end of a piece) plus one batch's working memory fit
    settings.calibration_memory; one ValueError when not even one image fits."""
    cache = 2 * samples * max(p.in_bytes + p.out_bytes for p in pieces)
    per_image, fixed = 0.0, 0.0
    for p in pieces:
        work, extra = p.work_bytes, 0.0
        if p.layer is not None:
            layer = converted.get_submodule(p.layer)
            refit_work, extra = _refit_bytes(layer, p.positions, settings.refit_rounds)
            # with a residual target: both shortcut values, their difference and the target, float32
            work += refit_work + (16 * layer.out_channels * p.positions if p.shortcut is not None else 0)
        per_image, fixed = max(per_image, work), max(fixed, extra)
    room = settings.memory_bytes - cache - fixed
    if room < per_image:
        need = (cache + fixed + per_image) / GIB
        raise ValueError(f"calibration_memory={settings.calibration_memory:g} GiB is below one chunk of the "
                         f"sequential refit: {need:.3g} GiB (activation caches of {samples} images for both "
                         f"networks {cache / GIB:.3g} GiB, normal equations {fixed / GIB:.3g} GiB, one image's "
                         f"working memory {per_image / GIB:.3g} GiB); raise calibration_memory or pass fewer "
                         "calibration images")
    return max(1, min(settings.batch_size, math.floor(room / per_image)))


def _run(module: fx.GraphModule, cache: Cache) -> Cache:
    """``module`` on every batch of ``cache``, releasing each batch's inputs as it goes."""
    out = []
    while cache:
        out.append(module(*cache.pop(0)))
    return out


def _system(layer: GDWSConv2d, rounds: int) -> PointwiseSystem | PatchSystem:
    return PatchSystem(layer) if rounds and layer.depthwise is not None else PointwiseSystem(layer)


def _target(piece: Piece, outputs: tuple, original: tuple, current: tuple) -> Tensor:
    """The refit target of a conv piece's batch: the original conv's output, plus the shortcut's error divided by
    the BatchNorm scale where the conv feeds a residual add (gdws.core.residual_target)."""
    y = outputs[piece.conv_output]
    if piece.shortcut is None:
        return y
    error = piece.shortcut[0](*original) - piece.shortcut[1](*current)
    return y + error * piece.inv_scale.to(error)[:, None, None]


def refit_sequential(model: nn.Module, converted: nn.Module, pieces: list[Piece], images: Tensor,
                     settings: CalibrationSettings, bar: Progress) -> dict[str, RefitStats]:
    """Refit every converted layer that has a piece of its own, in forward order (see the module docstring)."""
    batch = chunk_size(pieces, converted, images.shape[0], settings)
    stats = {}
    with torch.no_grad(), eval_mode(model), eval_mode(converted):
        original = [(x.clone(),) for x in batches(images, converted, batch)]
        current = [(x.clone(),) for x in batches(images, converted, batch)]
        for piece in pieces:
            if piece.layer is None:
                original = _run(piece.original, original)
            else:
                bar.set_note(piece.layer)
                system = _system(converted.get_submodule(piece.layer), settings.refit_rounds)
                done = []
                for inputs in current:
                    before = original.pop(0)
                    outputs = piece.original(*before)
                    system.add(inputs[piece.conv_input], _target(piece, outputs, before, inputs))
                    done.append(outputs)
                original = done
                stats[piece.layer] = (system.solve(settings.refit_rounds, settings.ridge)
                                      if isinstance(system, PatchSystem) else system.solve(settings.ridge))
                bar.update(1)
            current = _run(piece.converted, current)
    return stats


def refit_network(model: nn.Module, converted: nn.Module, order: list[str], images: Tensor,
                  settings: CalibrationSettings) -> tuple[dict[str, RefitStats], bool]:
    """Refit the converted layers ``order`` (forward order) of ``converted`` against ``model``: sequentially where
    the forward can be cut (settings.sequential), else layer by layer. Returns ({name: RefitStats}, sequential?)."""
    pieces = None
    if settings.sequential is not False and order:
        check = images[:2].to(*model_device_dtype(converted))
        pieces = cut_forward(model, converted, order, check, settings.residual_target is not False)
        if pieces is None and settings.residual_target:
            raise ValueError("residual_target=True needs the sequential refit, but the model's forward cannot be "
                             "cut into pieces around every converted conv; pass residual_target=None (automatic) or False")
        if pieces is None and settings.sequential:
            raise ValueError("sequential=True but the model's forward cannot be cut into pieces around every "
                             "converted conv (torch.fx could not trace it, a conv runs more than once, or the "
                             "pieces do not reproduce model(x)); pass sequential=None to fall back")
    with Progress(len(order), "GDWS refit, layer", settings.progress) as bar:
        if pieces is not None:
            return refit_sequential(model, converted, pieces, images, settings, bar), True
        stats = {}
        for name in order:
            bar.set_note(name)
            stats[name] = (refit_layer_alternating(model, converted, name, images, settings.refit_rounds,
                                                   settings.batch_size, settings.ridge) if settings.refit_rounds
                           else refit_layer(model, converted, name, images, settings.batch_size, settings.ridge))
            bar.update(1)
        return stats, False
