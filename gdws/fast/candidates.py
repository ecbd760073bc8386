"""All exact forms of one GDWS layer, as candidates for timing-based selection."""
from __future__ import annotations

import torch
from torch import nn

from gdws.fast.forms import Dense, Grouped, Padded, Stacked, Straightforward
from gdws.fast.forms_explicit import Unfold, Zero
from gdws.fast.spec import GDWSSpec


def build_forms(spec: GDWSSpec, include: tuple[str, ...] | None = None, compile: bool = False) -> dict[str, nn.Module]:
    """All exact forms of ``spec`` as eval-mode modules on the spec's device, keyed by form name.

    ``include`` restricts to the named forms. ``padded`` is skipped when it would more than double the
    depthwise channels (it is then dominated by ``grouped``). ``compile=True`` adds ``compiled``
    (torch.compile of the straightforward form; raises RuntimeError if torch.compile fails here).
    """
    if spec.G == 0:
        forms: dict[str, nn.Module] = {"zero": Zero(spec), "dense": Dense(spec)}
    else:
        forms = {}
        for cl in (False, True):
            for cls in (Straightforward, Stacked, Grouped, Dense):
                f = cls(spec, channels_last=cl)
                forms[f.form_name] = f
        if spec.in_channels * int(spec.g.max()) <= 2 * spec.G:
            forms["padded"] = Padded(spec)
        forms["unfold"] = Unfold(spec)
    if include is not None:
        forms = {k: v for k, v in forms.items() if k in include}
    if compile and spec.G > 0:
        forms["compiled"] = compiled_form(spec)
    return forms


def compiled_form(spec: GDWSSpec) -> nn.Module:
    """torch.compile of the straightforward form (compiled lazily on its first call)."""
    if not hasattr(torch, "compile"):
        raise RuntimeError("torch.compile is not available in this torch build; use the other forms")
    return torch.compile(Straightforward(spec), dynamic=False)
