"""One lent GPU, one command: the phases that turn a short GPU lease into full-scale rows of the paper's tables.

``python -m gdws.lease`` (or ``bash experiments/gpu_lease.sh``) runs, under a wall-clock deadline, the steps of
:func:`gdws.lease.plan.build_plan` (set-up, CUDA tests, fast adversarial training, table rows, GPU speed) as
separate processes, skipping a step that cannot finish in time and writing what each step produced to the
output folder as soon as it ends. ``GDWS_LEASE_SCALE=smoke`` runs every step shrunk, on CPU (the dry run).

Modules: ``costs`` and ``plan`` (steps and their time estimates), ``schedule`` (deadline decisions), ``runner``
(execution and outputs), ``forked`` (steps forked from a process that imported the libraries once), ``parts``
(splitting and joining weight files), ``export``/``perf``/``device`` (step programs), ``prepare`` (what must
travel to the GPU machine). The runner starts without Hydra, OmegaConf and torchattacks: on the GPU machine they
arrive as wheels in its first step.
"""
