"""Test session set-up: 8 virtual CPU devices, as the data-parallel tests need.

Must run before jax is imported anywhere.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
