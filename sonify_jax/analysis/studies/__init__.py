"""The studies, one module each: pure functions of a run's parameters and its
clips that write one JSON (and figure) per study."""
