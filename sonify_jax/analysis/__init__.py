"""Analysis studies (thesis chapters 5-6): top-k, residual, layer importance,
coherence, feature evolution, and the listening gallery.

Each study takes encoder params + an ``Network`` and a ``ClipSource``.
"""
