"""Reproduce the paper's tables on one GPU under a deadline, and bundle what an offline machine needs for it.

``python -m repro`` (or ``bash experiments/reproduce_gpu.sh``) runs, under a wall-clock deadline, the steps of
:func:`repro.plan.build_plan` (set-up, CUDA tests, fast adversarial training, table rows, GPU speed) as separate
processes, skipping a step that cannot finish in time and writing what each step produced to the output folder as
soon as it ends. ``GDWS_REPRO_SCALE=smoke`` runs every step shrunk, on CPU (the dry run).
``python scripts/bundle_offline.py`` prepares the offline bundle (wheels the target lacks, the CIFAR-10 kit).

Tooling beside the library, not part of it: nothing under ``gdws/`` imports it. Modules: ``costs`` and ``plan``
(steps and their time estimates), ``schedule`` (deadline decisions), ``runner`` (execution and outputs),
``forked`` (steps forked from a process that imported the libraries once), ``parts`` (splitting and joining
weight files, limits on what is returned), ``export``/``perf``/``device`` (step programs), ``bundle`` (what
must travel to an offline machine). The runner starts without Hydra, OmegaConf and torchattacks: offline they
arrive as wheels in its first step.
"""
