"""sonify_jax: raw-waveform CNNs for sound event recognition, and listening to
what they learned (Zeiler & Fergus deconvnet sonification)."""
__version__ = "0.1.0"
