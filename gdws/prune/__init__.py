"""Pruning baselines of the paper's tables, as callables for the pipeline's pruning hook (``conf/prune``):
HYDRA (unstructured, exact zeros) and robust ADMM channel pruning (structured, channels physically removed)."""
from gdws.prune.admm import admm_prune, channel_plan
from gdws.prune.channels import dependency_graph, filter_projection, group_masks, prunable_convs, remove_channels
from gdws.prune.hydra import hydra_prune
from gdws.prune.masking import attach_masks, fold_parametrizations, sparsity
from gdws.prune.scores import attach_scores, fix_masks, topk_mask

__all__ = ["admm_prune", "channel_plan", "dependency_graph", "filter_projection", "group_masks", "prunable_convs",
           "remove_channels", "hydra_prune", "attach_masks", "fold_parametrizations", "sparsity", "attach_scores",
           "fix_masks", "topk_mask"]
