"""Robustness evaluation: clean accuracy and accuracy under PGD / AutoAttack (torchattacks)."""
from gdws.eval.attacks import attack_spec, build_attack
from gdws.eval.evaluate import evaluate

__all__ = ["attack_spec", "build_attack", "evaluate"]
