"""The deconvnet's internals; the public API is :mod:`sonify_jax.deconvnet`.

* :mod:`rules`: how a ReLU transposes (deconvnet, guided, gradient);
* :mod:`chain`: the transposed chain of any network (reference and
  structured paths);
* :mod:`fft_conv`, :mod:`overlap_add` and :mod:`direct_conv`: the generic
  chain's fast conv transposes;
* :mod:`cnn12_fast` and :mod:`winograd`: the tuned kernels for networks of
  CNN12's pattern;
* :mod:`budget`: memory bounds and the output scaling.
"""
