"""Command-line glue of ``python -m sonify_jax.analysis.run``: the data a study
reads (``run_data``)."""
