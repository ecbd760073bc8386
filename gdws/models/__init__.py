"""Model zoo: every architecture of the paper's tables, registered by name.

Importing this package imports each family module so its ``@register_model`` builders run.
"""
from gdws.models.registry import create_model, list_models, register_model
from gdws.models.normalize import Normalize
from gdws.models.checkpoint import load_checkpoint
from gdws.models import cifar_resnet, mobilenet, preact_resnet, resnet_dws, robnet, vgg, wrn  # noqa: F401  (registers builders)

__all__ = ["create_model", "list_models", "register_model", "load_checkpoint", "Normalize"]
