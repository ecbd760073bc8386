"""`gdws convert --calibration FILE`: the data-aware options on the command line, one flag per field of
gdws.core.settings.CalibrationSettings (made from the fields, so a new setting needs no change here)."""
from __future__ import annotations

import argparse
from dataclasses import fields

import torch

from gdws.core.settings import CalibrationSettings


def _flag(parser: argparse.ArgumentParser, name: str) -> str:
    """``--refit-rounds`` for field refit_rounds; ``--calibration-batch-size`` where the plain flag is taken."""
    plain = "--" + name.replace("_", "-")
    return plain if plain not in parser._option_string_actions else "--calibration-" + plain[2:]


def add_calibration_arguments(parser: argparse.ArgumentParser) -> None:
    """--calibration FILE plus one flag per CalibrationSettings field (defaults: the settings' own)."""
    group = parser.add_argument_group("data-aware conversion (with --calibration)")
    group.add_argument("--calibration", metavar="FILE",
                       help="calibration images: a tensor [N, 3, H, W] in [0, 1] saved with torch.save (a few "
                            "hundred to a few thousand TRAINING images); whitening, refit and Fisher by default. "
                            "The flags below are gdws.core.settings.CalibrationSettings' fields")
    defaults = CalibrationSettings()
    for f in fields(CalibrationSettings):
        default = getattr(defaults, f.name)
        dest = f"calibration_option_{f.name}"
        if f.type in ("bool", "bool | None"):  # --fisher / --no-fisher (None: automatic, the default)
            group.add_argument(_flag(parser, f.name), dest=dest, action=argparse.BooleanOptionalAction,
                               default=default, help=f"(default {default})")
        else:
            group.add_argument(_flag(parser, f.name), dest=dest, type=type(default), default=default,
                               metavar=f.name.split("_")[-1].upper(), help=f"(default {default})")


def calibration_from_args(args: argparse.Namespace) -> dict:
    """convert()'s keywords for the parsed flags: {} without --calibration, else the images and settings."""
    if args.calibration is None:
        return {}
    images = torch.load(args.calibration, map_location="cpu", weights_only=True)
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"--calibration {args.calibration} must hold one tensor [N, 3, H, W], got "
                         f"{type(images).__name__}")
    options = {f.name: getattr(args, f"calibration_option_{f.name}") for f in fields(CalibrationSettings)}
    return {"calibration": images, "calibration_settings": CalibrationSettings(**options)}
