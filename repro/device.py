"""Step program of the reproduction run: name the machine and check that every package the runs import is there.

    python -m repro.device OUT.json
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata

# What run.py and the CUDA tests import beyond the standard library (the carried wheels among them).
PACKAGES = ("torch", "torchvision", "pytorch-lightning", "hydra-core", "omegaconf", "torchattacks", "pandas",
            "numpy", "pytest")


def describe() -> dict:
    """Python, the packages' versions, the accelerator (name, capability, memory, bf16) and nvidia-smi's line."""
    import torch

    info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
            "packages": {}, "cuda": torch.cuda.is_available()}
    for name in PACKAGES:
        try:
            info["packages"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info["packages"][name] = None
    if info["cuda"]:
        props = torch.cuda.get_device_properties(0)
        info.update(device=props.name, capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
                    memory_gib=round(props.total_memory / 2 ** 30, 1), bf16=torch.cuda.is_bf16_supported(),
                    cuda_runtime=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        from gdws.metrics.fps import device_name

        info["device"] = f"cpu ({device_name('cpu')})"
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"]
        info["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
    return info


def main() -> None:
    """Write the description to the path given and print it; exit 1 when a package is missing."""
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    info = describe()
    with open(sys.argv[1], "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))
    missing = [name for name, version in info["packages"].items() if version is None]
    if missing:
        sys.exit(f"missing packages: {', '.join(missing)} (carry their wheels: python scripts/bundle_offline.py)")


if __name__ == "__main__":
    main()
