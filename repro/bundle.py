"""The offline bundle: what a GPU machine without internet must be sent, prepared here (scripts/bundle_offline.py).

The target's image has PyTorch and a long list of packages (IMAGE_PACKAGES) but not all that run.py imports
(Hydra, torchattacks, ...). The missing ones travel as wheels pinned to the versions installed here, with the
CIFAR-10 rebuild kit, in ignored folders beside the checkout; together they must stay under a travel limit
(TRAVEL_LIMIT by default).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from repro.parts import MiB

REPO = Path(__file__).resolve().parents[1]
TRAVEL_LIMIT = 64 * MiB
# The device image's Python packages as its documentation lists them (2026-11-17; Python 3.12, x86-64).
IMAGE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp""".split())
# What the run's processes import: run.py's pipeline with its lazily imported steps, the step programs, the tests.
ENTRY_MODULES = ("gdws.pipeline.runner", "gdws.train", "gdws.eval", "gdws.data", "gdws.models", "gdws.metrics",
                 "gdws.fast", "gdws.tracking", "gdws.core.calibration", "repro.perf", "repro.export",
                 "repro.device", "pytest", "hydra", "torchattacks")
ALWAYS = ("hydra-core", "omegaconf", "antlr4-python3-runtime", "torchattacks")
# The device's interpreter, for requirement markers and wheel tags (device README: pip download for 3.12 x86-64).
TARGET = {"python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
          "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
          "platform_machine": "x86_64", "os_name": "posix", "extra": ""}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")


def normalize(name: str) -> str:
    """A distribution name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions(modules: tuple[str, ...] = ENTRY_MODULES) -> set[str]:
    """The project's requirements whose top-level modules are loaded after importing ``modules`` in a fresh
    interpreter (what the run's processes really use)."""
    code = ("import importlib, json, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\n"
            "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code, *modules], cwd=REPO, capture_output=True, text=True, check=True)
    tops = json.loads(out.stdout.strip().splitlines()[-1])
    owners = metadata.packages_distributions()
    found = {normalize(d) for top in tops if top not in sys.stdlib_module_names for d in owners.get(top, ())}
    # only what the project itself requires: e.g. setuptools' helpers, installed here, are vendored on the device
    return found & project_requirements()


def _requirements(name: str, extras: tuple[str, ...] = ()) -> list[str]:
    """Names that distribution ``name`` requires on the device (with ``extras``; markers at TARGET)."""
    out = []
    for line in metadata.requires(name) or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({**TARGET, "extra": e}) for e in ("", *extras)):
            out.append(normalize(req.name))
    return out


def project_requirements(project: str = "gdws", extras: tuple[str, ...] = ("dev",)) -> set[str]:
    """Every distribution the project needs, directly or through other ones (installed here, as declared)."""
    seen: set[str] = {project}  # the dev extra names the project itself (gdws[robustbench])
    todo = _requirements(project, extras)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            try:
                todo += _requirements(name)
            except metadata.PackageNotFoundError:  # declared for another platform only
                pass
    return seen - {project}


def missing_pins(wanted: set[str], image: frozenset[str] = IMAGE_PACKAGES) -> dict[str, str]:
    """{distribution: version installed here} for ``wanted`` and their requirements on the device that the image
    lacks (requirements followed with the device's markers; extras not followed)."""
    pins: dict[str, str] = {}
    todo = sorted(normalize(w) for w in wanted)
    while todo:
        name = todo.pop()
        if name in pins or name in image:
            continue
        try:
            pins[name] = metadata.version(name)
        except metadata.PackageNotFoundError as exc:
            raise RuntimeError(f"{name} is needed on the GPU machine but not installed here, so no version can be "
                               "pinned: pip install -e '.[dev]' first") from exc
        todo += _requirements(name)
    return pins


def download(pins: dict[str, str], dest: Path) -> list[Path]:
    """Wheels of ``pins`` for the device into ``dest`` (replacing any there before); sdist-only packages are
    built here into pure-Python wheels. Returns the wheel files."""
    fresh = dest.with_name(dest.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
            "3.12", "--implementation", "cp", *(a for p in PLATFORMS for a in ("--platform", p)), "-d", str(fresh)]
    for name, version in sorted(pins.items()):
        spec = f"{name}=={version}"
        if subprocess.run([*base, spec], capture_output=True, text=True).returncode == 0:
            continue
        # no wheel on the index (e.g. antlr4-python3-runtime 4.9.3): build it here; it must be pure Python
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(fresh), spec],
                               capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(f"no wheel of {spec} could be downloaded or built:\n{built.stderr[-2000:]}")
    wheels = sorted(fresh.glob("*.whl"))
    impure = [w.name for w in wheels if not w.name.endswith("-none-any.whl") and "cp312" not in w.name]
    if impure:
        raise RuntimeError(f"wheels that would not install on the device's Python 3.12: {impure}")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(fresh, dest)
    return sorted(dest.glob("*.whl"))


def copy_kit(src: Path, dest: Path) -> int:
    """Copy the CIFAR-10 rebuild kit (build.py and its data files) from ``src`` to ``dest``; returns the bytes."""
    if not (src / "build.py").is_file():
        raise FileNotFoundError(f"no CIFAR-10 rebuild kit at {src} (expected build.py there)")
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and (not (dest / f.name).is_file() or (dest / f.name).stat().st_size != f.stat().st_size):
            shutil.copyfile(f, dest / f.name)  # contents only: the kit's read-only modes would block a refresh
    return sum(f.stat().st_size for f in dest.iterdir() if f.is_file())


def travel_size(repo: Path, carry: list[str]) -> dict[str, int]:
    """Bytes that travel to the device: tracked files, untracked files git does not ignore, each carried path."""
    def listed(*flags: str) -> int:
        out = subprocess.run(["git", "ls-files", "-z", *flags], cwd=repo, capture_output=True, check=True).stdout
        return sum((repo / n).stat().st_size for n in out.decode().split("\0") if n and (repo / n).is_file())

    sizes = {"tracked": listed(), "untracked": listed("-o", "--exclude-standard")}
    for path in carry:
        root = repo / path
        sizes[path] = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.exists() else 0
    return sizes
