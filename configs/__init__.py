"""The experiment configs: one ``get_config(arg=None)`` file per experiment.

Each file is loaded by its path (``--config=configs/X.py:arg``;
``sonify_jax.config_files.load_config``), and imports the shared helpers of
``common.py`` with ``from sonify_jax.config_files import common``. The fields
and their domains are checked by ``sonify_jax.config_check``.
"""
