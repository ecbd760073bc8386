"""Datasets as LightningDataModules (CIFAR-10, SVHN, synthetic) with device-resident batched augmentation."""
from gdws.data.augment import random_crop_flip
from gdws.data.base import ImageDataModule, Split
from gdws.data.cifar10 import CIFAR10DataModule, read_cifar10
from gdws.data.svhn import SVHNDataModule, read_svhn
from gdws.data.synthetic import SyntheticDataModule

__all__ = ["ImageDataModule", "Split", "CIFAR10DataModule", "SVHNDataModule", "SyntheticDataModule",
           "random_crop_flip", "read_cifar10", "read_svhn"]
