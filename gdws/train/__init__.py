"""Adversarial training (PGD, TRADES, FGSM-RS, standard) as LightningModules, plus checkpoint helpers, the
training-time estimate and a quieter Lightning console."""
from gdws.train.attacks import AttackView, amp_dtype
from gdws.train.callbacks import (accelerator_options, best_checkpoint_callback, last_checkpoint_callback,
                                  resume_checkpoint)
from gdws.train.estimate import TrainingTimeEstimate, TrainingTooLong
from gdws.train.module import AdversarialTraining, FastTraining, PGDTraining, StandardTraining, TRADESTraining
from gdws.train.quiet import quiet_lightning
from gdws.train.spectra import SpectralLog, energy_shares

__all__ = ["AdversarialTraining", "FastTraining", "PGDTraining", "StandardTraining", "TRADESTraining",
           "best_checkpoint_callback", "last_checkpoint_callback", "accelerator_options", "resume_checkpoint",
           "AttackView", "amp_dtype", "SpectralLog", "energy_shares", "TrainingTimeEstimate", "TrainingTooLong",
           "quiet_lightning"]
