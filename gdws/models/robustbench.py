"""The RobustBench model zoo as a weight source (optional extra: ``pip install -e ".[robustbench]"``).

Zoo models take images in [0, 1] and carry their own input normalisation, as every model of gdws.models does,
so the attacks and GDWS treat them alike. :func:`robustbench_model` loads a zoo model with its trained weights
(downloaded on first use into RobustBench's cache layout ``<model_dir>/<dataset>/<threat_model>/<name>.pt``);
:func:`build_architecture` builds the same network with random weights and downloads nothing (offline tests).
"""
from __future__ import annotations

import difflib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from torch import nn

_INSTALL = 'pip install -e ".[robustbench]"'


def import_robustbench() -> ModuleType:
    """``robustbench``, importable despite two faults of its PyPI release 1.1.1, or an ImportError saying what to do.

    1.1.1 imports ``autoattack``, but the dependency it declares (pyautoattack) installs that code under the
    name ``pyautoattack``; 1.1.1 also imports ``pkg_resources``, which setuptools 82 and later no longer ship.
    """
    if importlib.util.find_spec("autoattack") is None and importlib.util.find_spec("pyautoattack") is not None:
        # Same package under its published name; only robustbench.eval uses it (AutoAttack, state.EvaluationState).
        import pyautoattack
        import pyautoattack.state

        sys.modules["autoattack"] = pyautoattack
        sys.modules["autoattack.state"] = pyautoattack.state
    try:
        import robustbench
        import robustbench.utils  # noqa: F401  (load_model; imports the zoo definitions too)
    except ModuleNotFoundError as err:
        if err.name == "robustbench":
            raise ImportError(f"model=robustbench needs the robustbench package: {_INSTALL}") from err
        if err.name == "pkg_resources":
            raise ImportError("robustbench 1.1.1 imports pkg_resources, which setuptools >= 82 no longer ships: "
                              f"pip install 'setuptools<82' (the extra {_INSTALL} pins it)") from err
        raise ImportError(f"robustbench is installed but cannot be imported ({err}); reinstall it: {_INSTALL}") from err
    return robustbench


def zoo_names(dataset: str = "cifar10", threat_model: str = "Linf") -> list[str]:
    """Names of the zoo's models for ``dataset`` and ``threat_model``, in the zoo's order."""
    import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    return list(model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)])


def _check_name(name: str, dataset: str, threat_model: str) -> None:
    """ValueError naming the closest zoo names when ``name`` is not in the zoo."""
    names = zoo_names(dataset, threat_model)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        raise ValueError(f"{name!r} is not a RobustBench {dataset} {threat_model} model"
                         + (f"; did you mean {', '.join(close)}?" if close else f"; choose one of {', '.join(names)}"))


def _timm_name(name: str, dataset: str, threat_model: str) -> str:
    """The timm registry name RobustBench's load_model tries first for a zoo entry."""
    return f"{name.lower().replace('-', '_')}_{dataset.lower()}_{threat_model.lower()}"


def build_architecture(name: str, dataset: str = "cifar10", threat_model: str = "Linf") -> nn.Module:
    """The zoo model ``name`` from the package's own definitions, with random weights (no download), in eval mode.

    Like RobustBench's load_model it builds the timm-registered network first when one exists under the entry's
    timm name: in 1.1.1 the XCiT entries' own constructors name timm models that are never registered.
    """
    import_robustbench()
    import timm
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    _check_name(name, dataset, threat_model)
    timm_name = _timm_name(name, dataset, threat_model)
    if timm.is_model(timm_name):
        return timm.create_model(timm_name, pretrained=False).eval()
    return model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)][name]["model"]().eval()


def robustbench_model(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                      model_dir: str = "checkpoints/robustbench", num_classes: int | None = None) -> nn.Module:
    """The trained zoo model ``name`` via ``robustbench.utils.load_model`` (downloads into ``model_dir`` once).

    ``num_classes`` (the run's data) must match the zoo dataset's, so that a zoo model never meets another
    dataset's labels. The returned model (eval mode, CPU) takes [0, 1] images; its ``weights_source``
    attribute names the weights file, so that a pipeline can tell that the model needs no training.
    """
    robustbench = import_robustbench()
    from robustbench.model_zoo.enums import BenchmarkDataset

    _check_name(name, dataset, threat_model)
    classes = robustbench.utils.DATASET_CLASSES[BenchmarkDataset(dataset)]
    if num_classes is not None and num_classes != classes:
        raise ValueError(f"RobustBench {dataset} models have {classes} classes but the data has {num_classes}; "
                         f"evaluate them on {dataset}")
    model = robustbench.utils.load_model(model_name=name, model_dir=model_dir, dataset=dataset,
                                         threat_model=threat_model)
    model.weights_source = str(Path(model_dir) / dataset / threat_model / f"{name}.pt")
    return model.eval()
