"""Test session set-up: 8 virtual CPU devices, as the data-parallel tests need.

Must run before jax is imported anywhere.
"""
import os

# The 8 virtual devices meet at every collective; on a loaded 2-core machine
# one of their threads can be starved past XLA:CPU's default 40 s, which
# aborts the process ("Termination timeout for `all gather ...`"): wait longer.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                      "--xla_cpu_collective_call_terminate_timeout_seconds=600")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
