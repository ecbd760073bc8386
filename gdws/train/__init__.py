"""Adversarial training (PGD, TRADES, FGSM-RS, standard) as a LightningModule, plus checkpoint helpers."""
from gdws.train.attacks import AttackView, amp_dtype, make_attack
from gdws.train.callbacks import best_checkpoint_callback, resume_checkpoint
from gdws.train.module import METHODS, AdversarialTraining

__all__ = ["AdversarialTraining", "METHODS", "best_checkpoint_callback", "resume_checkpoint", "AttackView",
           "amp_dtype", "make_attack"]
