"""Analysis (thesis chapters 5-6 and the sanity and pitch studies).

Layout:

* ``run`` / ``aggregate``: the commands (``python -m sonify_jax.analysis.run``,
  which checks the flags, looks the study up by name and dispatches;
  ``python -m sonify_jax.analysis.aggregate``);
* ``cli/``: their glue (which data a study reads);
* ``studies/``: one module per study (top-k, residual, layer importance,
  coherence, evolution, activity, time invariance, atlas, sanity, pitch,
  gallery), each with its ``STUDY``: its flags, checks and run
  (``studies.get(name)``);
* ``core/``: shared machinery (streaming, top-k, pairs) and the controls;
* ``figures/``: the studies' figures; ``pages/``: the gallery and the atlas
  browser.

Each study takes encoder params + a ``Network`` and a ``ClipSource``.
"""
