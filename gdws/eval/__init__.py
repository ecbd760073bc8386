"""Robustness evaluation: clean accuracy and accuracy under PGD / AutoAttack (torchattacks)."""
from gdws.eval.attacks import PGD, AutoAttack, EvalAttack, NoAttack, attack_spec, build_attack
from gdws.eval.evaluate import evaluate

__all__ = ["AutoAttack", "EvalAttack", "NoAttack", "PGD", "attack_spec", "build_attack", "evaluate"]
