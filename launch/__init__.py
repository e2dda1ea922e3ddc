"""Launchers: Cloud TPU VMs (tpu_vm), config sweeps (sweep) and a multi-host
sanity check (multihost_check). Run from the repository root, e.g.
``python -m launch.tpu_vm --help``."""
