"""Shared machinery of the studies: streaming, running top-k, sonified pairs
(``common``) and the controls every claim is reported next to (``controls``)."""
