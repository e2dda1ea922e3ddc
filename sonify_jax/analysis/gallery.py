"""Listening gallery: one offline HTML page over top-k study outputs.

``write_gallery(out_dir, {'contrastive': topk_dir_a, 'supervised':
topk_dir_b})`` copies each model's WAVs and spectrogram PNGs next to the page
(``out_dir/assets/<model>/...``) and writes ``out_dir/index.html``: CSS and
JS inline, no network access, every path relative, so the folder can be
zipped, copied or opened from a file manager.

Layout: one section per layer; inside, one column per model (side by side),
each listing that model's reported feature maps; per map, its top clips with
the input and the sonification playable, and the input|sonification
spectrogram pair. Map ``m`` of one model has no relation to map ``m`` of
another, so rows pair the models' maps by rank of strength, not by index.
"""
import html
import json
import os
import re
import shutil
from typing import Any, Dict, List, Optional

import numpy as np

from sonify_jax import audio_io
from sonify_jax.analysis import common

_CSS = """
body{font-family:system-ui,sans-serif;margin:1em 2em;background:#fafafa;
color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;
padding-bottom:.2em;margin-top:1.5em}
.models{display:grid;grid-template-columns:repeat(var(--n),minmax(0,1fr));
gap:1em}
.model{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5em}
.model h3{margin:.2em 0 .5em;font-size:1em}
.map{border-top:1px dashed #ddd;padding:.4em 0}
.map h4{margin:.2em 0;font-size:.9em}
.clip{margin:.4em 0}.clip img{width:100%;height:auto;display:block}
.players{display:flex;gap:.5em;flex-wrap:wrap;font-size:.8em}
.players label{display:flex;flex-direction:column}
audio{width:16em;max-width:100%}
.meta{color:#666;font-size:.8em}
nav a{margin-right:.8em}
.hidden{display:none}
"""

_JS = """
(function(){
  var select=document.getElementById('layer-select');
  function show(){
    var v=select.value;
    document.querySelectorAll('section.layer').forEach(function(s){
      s.classList.toggle('hidden', v!=='all' && s.dataset.layer!==v);
    });
  }
  select.addEventListener('change', show);
  // Only one clip plays at a time: starting one pauses the others.
  document.addEventListener('play', function(e){
    document.querySelectorAll('audio').forEach(function(a){
      if(a!==e.target){a.pause();}
    });
  }, true);
  show();
})();
"""


def _slug(name: str) -> str:
  slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")
  return slug or "model"


def _copy(src: str, dst: str) -> None:
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  tmp = dst + ".tmp"
  shutil.copyfile(src, tmp)
  os.replace(tmp, dst)


def _load_model(name: str, topk_dir: str, out_dir: str, max_ranks: int
                ) -> Dict[str, Any]:
  """Copies one model's assets; returns ``{layer: [(map, [clip...])]}``."""
  with open(os.path.join(topk_dir, "topk.json")) as f:
    index = json.load(f)
  asset_root = os.path.join("assets", _slug(name))
  layers: Dict[int, List] = {}
  for layer, maps in index["layers"].items():
    entries = []
    for m, clips in maps.items():
      kept = []
      for e in clips[:max_ranks]:
        item = dict(e)
        for key in ("input_wav", "sonification_wav"):
          rel = os.path.join(asset_root, e[key])
          _copy(os.path.join(topk_dir, e[key]), os.path.join(out_dir, rel))
          item[key] = rel
        rel_png = os.path.join(asset_root,
                               e["figure"] or
                               os.path.splitext(e["sonification_wav"])[0]
                               + ".png")
        if e.get("figure"):
          _copy(os.path.join(topk_dir, e["figure"]),
                os.path.join(out_dir, rel_png))
        else:  # top-k run without pair figures: draw them now
          from sonify_jax import plotting  # pylint: disable=g-import-not-at-top
          plotting.save_pair_figure(
              os.path.join(out_dir, rel_png),
              audio_io.load_audio(os.path.join(out_dir, item["input_wav"])),
              audio_io.load_audio(os.path.join(out_dir,
                                               item["sonification_wav"])),
              title=f"{name} layer {layer} map {m} rank {e['rank'] + 1}")
        item["figure"] = rel_png
        kept.append(item)
      top = max((c["activation"] for c in kept), default=-np.inf)
      entries.append((int(m), kept, top))
    # Strongest maps first, so row i pairs each model's i-th strongest map.
    entries.sort(key=lambda t: (-t[2], t[0]))
    layers[int(layer)] = [(m, kept) for m, kept, _ in entries]
  return {"name": name, "arch": index.get("arch", "?"),
          "source": index.get("source", "?"), "layers": layers}


def _url(path: str) -> str:
  # Relative URL with forward slashes; escape characters HTML/URLs dislike.
  from urllib.parse import quote  # pylint: disable=g-import-not-at-top
  return quote(path.replace(os.sep, "/"))


def _clip_html(model: str, layer: int, m: int, e: Dict[str, Any]) -> str:
  esc = html.escape
  alt = f"{model} layer {layer} map {m} rank {e['rank'] + 1} spectrograms"
  return (
      '<div class="clip">'
      f'<div class="meta">rank {e["rank"] + 1}: clip '
      f'{esc(str(e["clip_id"]))} (activation {e["activation"]:.3g})</div>'
      f'<img src="{_url(e["figure"])}" alt="{esc(alt)}" loading="eager">'
      '<div class="players">'
      f'<label>input<audio controls preload="metadata" '
      f'src="{_url(e["input_wav"])}"></audio></label>'
      f'<label>sonification<audio controls preload="metadata" '
      f'src="{_url(e["sonification_wav"])}"></audio></label>'
      '</div></div>')


def write_gallery(out_dir: str, models: Dict[str, str],
                  title: str = "sonify_jax listening gallery",
                  max_ranks: int = 3, notes: Optional[str] = None,
                  figures: Optional[Dict[str, str]] = None) -> str:
  """Writes ``out_dir/index.html`` and its assets; returns the page's path.

  Args:
    out_dir: gallery folder (created).
    models: ``{display name: folder of a run_topk output}`` in column order.
    title: page title.
    max_ranks: top clips shown per map.
    notes: optional paragraph of plain text under the title.
    figures: optional ``{caption: png path}`` study figures (e.g. the
      coherence plot) copied beside the page and shown above the layers.
  """
  if not models:
    raise ValueError("no models to show")
  for name, path in models.items():
    if not os.path.isfile(os.path.join(path, "topk.json")):
      raise FileNotFoundError(f"{name}: no topk.json in {path} (run the "
                              "top-k study first)")
  os.makedirs(out_dir, exist_ok=True)
  loaded = [_load_model(n, p, out_dir, max_ranks) for n, p in models.items()]
  layers = sorted({l for m in loaded for l in m["layers"]})
  esc = html.escape
  parts = [
      "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
      '<meta name="viewport" content="width=device-width, initial-scale=1">',
      '<link rel="icon" href="data:,">',  # no favicon request
      f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
      f"<h1>{esc(title)}</h1>"]
  if notes:
    parts.append(f"<p>{esc(notes)}</p>")
  parts.append("<p class=\"meta\">" + "; ".join(
      f"{esc(m['name'])}: {esc(m['arch'])} on {esc(m['source'])}"
      for m in loaded) + ". Each map shows its top clips: the input, and the "
      "deconvnet sonification of that map alone.</p>")
  for i, (caption, png) in enumerate((figures or {}).items()):
    rel = os.path.join("assets", "figures", f"{i:02d}_{os.path.basename(png)}")
    _copy(png, os.path.join(out_dir, rel))
    parts.append(f'<figure><img src="{_url(rel)}" alt="{esc(caption)}" '
                 f'style="max-width:40em;width:100%"><figcaption class="meta">'
                 f'{esc(caption)}</figcaption></figure>')
  parts.append('<p><label>Layer: <select id="layer-select">'
               '<option value="all">all</option>' +
               "".join(f'<option value="{l}">{l}</option>' for l in layers) +
               "</select></label> <nav>" +
               "".join(f'<a href="#layer{l}">layer {l}</a>' for l in layers) +
               "</nav></p>")
  for layer in layers:
    parts.append(f'<section class="layer" id="layer{layer}" '
                 f'data-layer="{layer}"><h2>Layer {layer}</h2>'
                 f'<div class="models" style="--n:{len(loaded)}">')
    for model in loaded:
      parts.append(f'<div class="model"><h3>{esc(model["name"])}</h3>')
      maps = model["layers"].get(layer)
      if not maps:
        parts.append('<p class="meta">not studied for this model</p>')
      for m, clips in maps or []:
        parts.append(f'<div class="map"><h4>map {m}</h4>')
        parts.extend(_clip_html(model["name"], layer, m, e) for e in clips)
        parts.append("</div>")
      parts.append("</div>")
    parts.append("</div></section>")
  parts.append(f"<script>{_JS}</script></body></html>")
  path = os.path.join(out_dir, "index.html")
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write("\n".join(parts))
  os.replace(tmp, path)
  common.log(f"gallery: {path}")
  return path
