"""The demo: ``python -m sonify_jax.demo`` (``__main__``, the command line) runs
the story (``story``: train, analyse, listen) on the embedded data."""
