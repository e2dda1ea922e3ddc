"""What the atlas shows of each map besides its top clips: explanations that
depend on the weights (issue 29).

Per map of a layer: its feature visualization by the trained network
(:mod:`sonify_jax.visualize`, WAV and spectrogram), how much of it survives
re-initialisation (the untrained network's visualization from the same key,
compared by :mod:`sonify_jax.visualize.compare`'s time-blind measures), and
its dissection (:mod:`sonify_jax.analysis.studies.dissect`: label, IoU,
detector, tone tuning curve, preferred f0) for the trained and the
untrained network. The two methods are checked against each other: of the
maps that dissection labels with a frequency (a tone or complex detector:
its f0; a noise-band detector: its third-octave band), the share whose
visualization's pyin f0 is within a semitone of that f0, or inside that
band (:func:`f0_agreement`), for the trained and the untrained network, each
its own labels and visualizations. Written to ``layerNN/explain.json`` of
the atlas folder
(``layerNN/visualize/`` holds the sounds); a layer whose file already holds
the same settings is skipped (the atlas resumes the same way).
"""
import os
from typing import Any, Dict

import jax
import numpy as np

from sonify_jax import atomic_io, audio_io, plotting
from sonify_jax.analysis.core import probes
from sonify_jax.visualize import compare, optimize

EXPLAIN = "explain.json"
STEPS = 128
SECONDS = 0.25
# How far (cents) a visualization's f0 may sit from a label's frequency:
# a semitone from an f0, a third-octave band's half-width from its centre.
AGREE_CENTS = {"tone": 100.0, "complex": 100.0, "note": 100.0,
               "noise": 200.0}


def f0_agreement(dissection: Dict[str, Any], probe: probes.Probes,
                 visual_f0: np.ndarray) -> Dict[str, Any]:
  """Of the maps ``dissection`` (``dissect.dissect_maps``' result) labels
  with a frequency, how many have a visualization whose f0 (``visual_f0``
  per map, NaN: unvoiced) is within :data:`AGREE_CENTS` of it."""
  labelled, agree = [], []
  for m, best in enumerate(dissection["best"]):
    kind, hz = probe.concepts[int(best)]
    if dissection["detector"][m] and kind in AGREE_CENTS:
      labelled.append(m)
      if compare.cents_apart(visual_f0[m], hz) < AGREE_CENTS[kind]:
        agree.append(m)
  return {"labelled": len(labelled), "agree": len(agree),
          "share": len(agree) / len(labelled) if labelled else None,
          "agreeing_maps": agree}


def settings_record(steps: int, seconds: float, seed: int) -> Dict[str, Any]:
  return {"steps": steps, "seconds": seconds, "seed": seed,
          "draws": 1, "agree_cents": AGREE_CENTS,
          "visualize": optimize.Settings(steps=steps).to_dict()}


def explain_layer(trained, untrained, arch, layer: int, layer_dir: str,
                  steps: int = STEPS, seconds: float = SECONDS,
                  seed: int = 0) -> Dict[str, Any]:
  """Writes (or keeps) ``layer_dir/explain.json``; returns its content."""
  from sonify_jax.analysis.studies import dissect  # pylint: disable=g-import-not-at-top
  record = settings_record(steps, seconds, seed)
  path = os.path.join(layer_dir, EXPLAIN)
  if os.path.isfile(path):
    import json  # pylint: disable=g-import-not-at-top
    with open(path) as f:
      old = json.load(f)
    if old.get("settings") == record:
      return old
  maps = list(range(arch.channels[layer - 1]))
  seconds = max(seconds, arch.min_input_length(layer) / arch.sample_rate)
  settings = optimize.Settings(steps=steps)
  key = jax.random.PRNGKey(seed)
  ours = optimize.visualize(trained, arch, layer, maps, key, seconds=seconds,
                            settings=settings)
  theirs = optimize.visualize(untrained, arch, layer, maps, key,
                              seconds=seconds, settings=settings)
  survives = compare.similarities(ours.waveforms, theirs.waveforms,
                                  arch.sample_rate)
  probe = probes.generate(arch.sample_rate, dissect.SECONDS, draw=seed)
  centres = dissect.position_centres(arch, layer, probe.audio.shape[1])
  labels = {name: dissect.dissect_maps(
      dissect.activations(params, arch, layer, probe.audio), centres, probe)
            for name, params in (("trained", trained),
                                 ("untrained", untrained))}
  visual_f0 = {name: np.array([compare.median_f0(w, arch.sample_rate)
                               for w in vis.waveforms])
               for name, vis in (("trained", ours), ("untrained", theirs))}
  out_dir = os.path.join(layer_dir, "visualize")
  os.makedirs(out_dir, exist_ok=True)
  entries = []
  for m in maps:
    stem = os.path.join("visualize", f"map{m:04d}")
    wave = ours.waveforms[m]
    audio_io.write_wav(os.path.join(layer_dir, stem + ".wav"), wave,
                       arch.sample_rate)
    _, _, db = plotting.log_spectrogram(wave, arch.sample_rate)
    plotting.save_spectrogram_png(os.path.join(layer_dir, stem + ".png"), db)
    entry = {"map": m, "wav": stem + ".wav", "png": stem + ".png",
             "activation": float(ours.activation[m]),
             "survives": {k: v[m] for k, v in survives.items()}}
    for name, out in labels.items():
      best = int(out["best"][m])
      entry[name] = {"label": dissect.label_of(probe, best),
                     "iou": float(out["iou"][best, m]),
                     "detector": bool(out["detector"][m]),
                     "preferred_f0": float(out["preferred_f0"][m]),
                     "visualization_f0": _finite_or_none(
                         visual_f0[name][m])}
    entry["tone_curve"] = labels["trained"]["curves"]["tone"][:, m].tolist()
    entries.append(entry)
  result = {"layer": layer, "settings": record,
            "f0_grid": probes.f0_grid(arch.sample_rate).tolist(),
            "agreement": {name: f0_agreement(labels[name], probe,
                                             visual_f0[name])
                          for name in labels},
            "maps": entries}
  atomic_io.write_json(path, result)
  return result


def _finite_or_none(value: float):
  return float(value) if np.isfinite(value) else None
