"""Listening gallery: one offline HTML page over top-k study outputs.

``write_gallery(out_dir, {'contrastive': topk_dir_a, 'supervised':
topk_dir_b})`` copies each model's WAVs and spectrogram PNGs next to the page
(``out_dir/assets/<model>/...``) and writes ``out_dir/index.html``: CSS and
JS inline, no network access, every path relative, so the folder can be
zipped, copied or opened from a file manager.

Layout: a two-sentence guide to what a listener should compare; the study
figures (with their controls as dashed lines; click to enlarge); then one
section per layer. In a section, first the *same clips* through every model
(each model's most active map on that clip, with the top-k study's
``shared_clips``), then the models' strongest maps side by side, row i
pairing each model's i-th strongest map (map ``m`` of one model has no
relation to map ``m`` of another). Every sonification is shown and playable
next to its controls: the same map of the run's untrained init, and a random
live map of the trained model on the same clip. Dead (all-zero)
sonifications are labelled as such. Feature-evolution figures, if given,
come last, full width, with every step's audio.
"""
import html
import json
import os
import re
import shutil
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from sonify_jax import atomic_io, audio_io, plotting
from sonify_jax.analysis.core import common
from sonify_jax.analysis.core import controls
from sonify_jax.errors import UserError

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
figure.study img{max-width:48em;width:100%}figure.wide img{width:100%}
figure{margin:1em 0}.guide{background:#eef4ff;padding:.6em;border-radius:6px}
.dead{color:#b00;font-weight:bold}
.players{display:flex;gap:.5em;flex-wrap:wrap;font-size:.8em}
.players label{display:flex;flex-direction:column}
audio{width:16em;max-width:100%}
.meta{color:#666;font-size:.8em}
nav a{margin-right:.8em}
.hidden{display:none}
.headline{font-weight:bold;font-size:1.05em;max-width:60em}
figure.study img{min-width:min(40em,100%)}
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
  with atomic_io.atomic_path(dst) as tmp:
    shutil.copyfile(src, tmp)


def _asset(topk_dir: str, out_dir: str, asset_root: str, rel: str) -> str:
  """Copies ``topk_dir/rel`` beside the page; returns its page path."""
  dst = os.path.join(asset_root, rel)
  _copy(os.path.join(topk_dir, rel), os.path.join(out_dir, dst))
  return dst


def _load_entry(name: str, layer: str, e: Dict[str, Any], topk_dir: str,
                out_dir: str, asset_root: str) -> Dict[str, Any]:
  """One index entry with its WAVs/PNG copied (the PNG drawn if missing)."""
  item = dict(e)
  for key in ("input_wav", "sonification_wav"):
    item[key] = _asset(topk_dir, out_dir, asset_root, e[key])
  item["controls"] = {}
  for condition, view in (e.get("controls") or {}).items():
    item["controls"][condition] = dict(
        view, sonification_wav=_asset(topk_dir, out_dir, asset_root,
                                      view["sonification_wav"]))
  if e.get("figure"):
    item["figure"] = _asset(topk_dir, out_dir, asset_root, e["figure"])
  else:  # top-k run without pair figures: draw them now
    from sonify_jax import plotting  # pylint: disable=g-import-not-at-top
    rel = os.path.join(asset_root, os.path.splitext(e["sonification_wav"])[0]
                       + ".png")
    # The WAVs at their own rate (the network's: 16 kHz for CREPE).
    audio, rate = audio_io.read_audio(os.path.join(out_dir,
                                                   item["input_wav"]))
    panels = [("input", audio),
              ("sonification", audio_io.read_audio(
                  os.path.join(out_dir, item["sonification_wav"]))[0])]
    for condition, view in item["controls"].items():
      panels.append((controls.LABELS.get(condition, condition),
                     audio_io.read_audio(os.path.join(
                         out_dir, view["sonification_wav"]))[0]))
    plotting.save_panels_figure(
        os.path.join(out_dir, rel), panels, rate,
        title=f"{name} layer {layer} map {e.get('map', '?')} rank "
        f"{e['rank'] + 1}")
    item["figure"] = rel
  return item


def read_index(path: str, keys: Tuple[str, ...] = ()) -> Dict[str, Any]:
  """A study's JSON index, read before the gallery writes anything.

  Raises:
    UserError: it is missing, not valid JSON (a torn write, an edited file)
      or lacks one of ``keys``; the message names the file.
  """
  try:
    with open(path) as f:
      index = json.load(f)
  except FileNotFoundError:
    raise UserError(f"{path} not found (run the study first)") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise UserError(f"{path} is not valid JSON ({error}); run the study "
                    "again") from None
  missing = [k for k in keys if not isinstance(index, dict) or k not in index]
  if missing:
    raise UserError(f"{path} is not a study index (no "
                    f"{', '.join(repr(k) for k in missing)}); run the study "
                    "again")
  return index


def _named_files(index: Dict[str, Any]) -> List[str]:
  """Every file a top-k index names (relative to its folder)."""
  entries = [e for maps in index["layers"].values() for clips in
             maps.values() for e in clips]
  entries += [e for per_layer in (index.get("same_clip") or {}).values()
              for e in per_layer]
  files = []
  for e in entries:
    files += [e["input_wav"], e["sonification_wav"]]
    files += [v["sonification_wav"] for v in (e.get("controls") or
                                              {}).values()]
    if e.get("figure"):
      files.append(e["figure"])
  return files


def _check_topk(name: str, topk_dir: str) -> Dict[str, Any]:
  """The top-k index of ``topk_dir``, checked: valid JSON, and every file
  it names present."""
  path = os.path.join(topk_dir, "topk.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{name}: no topk.json in {topk_dir} (run the "
                            "top-k study first)")
  index = read_index(path, ("layers",))
  try:
    files = _named_files(index)
  except (AttributeError, KeyError, TypeError) as error:
    raise UserError(f"{path} is not a top-k index ({error!r} missing or "
                    "malformed); run the study again") from None
  missing = [f for f in files if not os.path.isfile(
      os.path.join(topk_dir, f))]
  if missing:
    raise UserError(f"{path} names {len(missing)} missing file(s), e.g. "
                    f"{os.path.join(topk_dir, missing[0])}; run the study "
                    "again")
  return index


def _load_model(name: str, topk_dir: str, out_dir: str, max_ranks: int,
                index: Dict[str, Any]) -> Dict[str, Any]:
  """Copies one model's assets; returns its layers (maps strongest first),
  its same-clip entries and its per-layer control numbers."""
  asset_root = os.path.join("assets", _slug(name))
  layers: Dict[int, List] = {}
  for layer, maps in index["layers"].items():
    entries = []
    for m, clips in maps.items():
      kept = [_load_entry(name, layer, dict(e, map=int(m)), topk_dir,
                          out_dir, asset_root) for e in clips[:max_ranks]]
      top = max((c["activation"] for c in kept), default=-np.inf)
      entries.append((int(m), kept, top))
    # Strongest maps first, so row i pairs each model's i-th strongest map.
    entries.sort(key=lambda t: (-t[2], t[0]))
    layers[int(layer)] = [(m, kept) for m, kept, _ in entries]
  same_clip = {int(l): {e["clip_index"]: _load_entry(name, l, e, topk_dir,
                                                     out_dir, asset_root)
                        for e in entries}
               for l, entries in (index.get("same_clip") or {}).items()}
  step = index.get("checkpoint_step")   # recorded by analysis.run
  checkpoint = ("" if step is None else
                f", checkpoint step {step} ({index.get('checkpoint_why')})")
  return {"name": name, "arch": index.get("arch", "?"),
          "source": index.get("source", "?"), "checkpoint": checkpoint,
          "layers": layers,
          "same_clip": same_clip,
          "per_layer": {int(l): v for l, v in
                        (index.get("per_layer") or {}).items()}}


def _url(path: str) -> str:
  # Relative URL with forward slashes; escape characters HTML/URLs dislike.
  from urllib.parse import quote  # pylint: disable=g-import-not-at-top
  return quote(path.replace(os.sep, "/"))


def _player(label: str, src: str, dead: bool = False, extra: str = "") -> str:
  esc = html.escape
  dead_note = (f' <span class="dead">{esc(plotting.DEAD_LABEL)}</span>'
               if dead else "")
  return (f'<label>{esc(label)}{esc(extra)}{dead_note}<audio controls '
          f'preload="metadata" src="{_url(src)}"></audio></label>')


def _clip_html(model: str, layer: int, m: int, e: Dict[str, Any],
               heading: str = "") -> str:
  esc = html.escape
  alt = (f"{model} layer {layer} map {m} rank {e['rank'] + 1}: input, "
         "sonification and controls")
  coh = e.get("coherence")
  players = [_player("input", e["input_wav"]),
             _player(f"trained: map {m}", e["sonification_wav"],
                     e.get("dead", False),
                     f" (coh {coh:.2f})" if coh is not None else "")]
  views = e.get("controls", {})
  for condition in [c for c in controls.CONDITIONS if c in views]:
    view = views[condition]
    players.append(_player(
        f"{controls.LABELS.get(condition, condition)}: map {view['map']}",
        view["sonification_wav"], view.get("dead", False),
        f" (coh {view['coherence']:.2f})"
        if view.get("coherence") is not None else ""))
  return (
      '<div class="clip">'
      f'<div class="meta">{esc(heading)}clip {esc(str(e["clip_id"]))} '
      f'(activation {e["activation"]:.3g})</div>'
      f'<a href="{_url(e["figure"])}" target="_blank">'
      f'<img src="{_url(e["figure"])}" alt="{esc(alt)}" loading="eager"></a>'
      f'<div class="players">{"".join(players)}</div></div>')


def _controls_line(model: Dict[str, Any], layer: int) -> str:
  """The per-layer numbers a listener's impression is checked against."""
  numbers = model["per_layer"].get(layer)
  if not numbers:
    return ""
  text = "; ".join(f"{controls.LABELS.get(c, c)} {numbers[c]:.3f}"
                   for c in controls.CONDITIONS if c in numbers)
  return (f'<p class="meta">Mean top-5 coherence of these sonifications '
          f"with their clips: {html.escape(text)}.</p>")


_GUIDE = (
    "Play each input, then the trained map's sonification, then its two "
    "controls on the same clip (the same map in the run's untrained init, "
    "and a random live map of the trained model): a map has learned "
    "something only where its sonification keeps more of the input's pitch, "
    "rhythm and timbre than both controls do. Compare the models on the same "
    "clip at the same layer and activation rank, and trust a difference only "
    "where the study figures' intervals (n >= 2 runs) do not overlap.")


def _is_wide(png: str) -> bool:
  """A figure of several panels side by side reads only at full width."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(png) as image:
    width, height = image.size
  return width > 2.2 * height


def _split_caption(caption: str) -> Tuple[str, str]:
  """(its first two sentences, the rest)."""
  sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z(])", caption.strip())
  return " ".join(sentences[:2]), " ".join(sentences[2:])


def _figure_html(rel: str, caption: str, wide: bool,
                 headline: Optional[str] = None) -> str:
  """A figure, click to enlarge: its headline (the result against its
  control) above it, at most two sentences of caption, details folded."""
  esc = html.escape
  short, rest = _split_caption(caption)
  details = (f"<details><summary>details</summary>{esc(rest)}</details>"
             if rest else "")
  top = f'<p class="headline">{esc(headline)}</p>' if headline else ""
  return (f'{top}<figure class="{"wide" if wide else "study"}"><a '
          f'href="{_url(rel)}" target="_blank" title="open full size"><img '
          f'src="{_url(rel)}" alt="{esc(short)}"></a><figcaption class="meta">'
          f"{esc(short)} (click to enlarge){details}</figcaption></figure>")


def _study_sections(study: str, folders: Dict[str, str], out_dir: str,
                    heading: str, intro: str, describe, caption: str
                    ) -> List[str]:
  """A section for one study over models: per model, what ``describe(
  result)`` says (HTML) and the study's figure, copied beside the page;
  ``caption`` (with ``{name}``) under it."""
  parts = [f'<section class="{study}"><h2>{html.escape(heading)}</h2>',
           f'<p class="meta">{html.escape(intro)}</p>']
  for name, folder in folders.items():
    result = read_index(os.path.join(folder, f"{study}.json"))
    rel = os.path.join("assets", f"{study}_" + _slug(name), result["figure"])
    _copy(os.path.join(folder, result["figure"]), os.path.join(out_dir, rel))
    parts.append(f"<h3>{html.escape(name)}</h3>{describe(result)}")
    parts.append(_figure_html(rel, caption.format(name=name),
                              wide=len(result["layers"]) >= 3))
  parts.append("</section>")
  return parts


def _items(lines) -> str:
  return "<ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in lines) + (
      "</ul>")


def _sanity_html(sanity: Dict[str, str], out_dir: str) -> List[str]:
  """The sanity study of each model: its headline, a verdict per layer and
  rule (folded away), and its figure."""
  from sonify_jax.analysis.studies import sanity as sanity_lib  # pylint: disable=g-import-not-at-top
  return _study_sections(
      "sanity", sanity, out_dir, "Does it depend on the weights?",
      "Each model re-initialised block by block from the top (Adebayo et "
      "al. 2018): how similar its sonifications of the same maps stay to "
      "the trained ones.",
      lambda result: (f'<p class="headline">{html.escape(result["headline"])}'
                      "</p><details><summary>every layer and rule</summary>"
                      f"{_items(sanity_lib.verdicts(result))}</details>"),
      "{name}: similarity to the trained sonifications vs blocks randomised "
      "(95 % CI over clip-map pairs).")


def _dissect_html(dissect: Dict[str, str], out_dir: str) -> List[str]:
  """The dissection of each model: a verdict per layer (detectors trained
  vs untrained) and its figure."""
  return _study_sections(
      "dissect", dissect, out_dir, "What do its maps respond to?",
      "Network dissection (Bau et al. 2017) on generated probes with exact "
      "labels (tones, harmonic complexes, band noise, clicks): how many "
      "maps detect a concept, trained vs the untrained init of the same "
      "run (95 % CI over probe draws).",
      lambda result: _items(result["layers"][l]["verdict"]
                            for l in sorted(result["layers"], key=int)),
      "{name}: maps labelled by dissection per layer and concept kind, "
      "trained vs untrained (95 % CI over probe draws).")


def _evolution_html(name: str, evo_dir: str, out_dir: str) -> List[str]:
  """Full-width evolution figures and, per (map, clip), its audio at every
  kept step."""
  evo = read_index(os.path.join(evo_dir, "evolution.json"))
  root = os.path.join("assets", "evolution_" + _slug(name))
  selected = evo.get("selected_step", max(evo["steps"]))
  parts = [f"<h2>Feature evolution over training: {html.escape(name)}</h2>",
           f'<p class="meta">The selected model\'s (step {selected}) '
           "strongest maps, each on its top clip, sonified at every kept "
           "checkpoint (step 0 is the untrained init: the control).</p>"]
  for layer, entries in sorted(evo["layers"].items(), key=lambda t: int(t[0])):
    fig = evo["figures"].get(layer)
    if fig:
      parts.append(_figure_html(
          _asset(evo_dir, out_dir, root, fig),
          f"{name}, layer {layer}: the same (map, clip) pairs sonified at "
          f"steps {evo['steps']}", wide=True))
    rows = []
    for e in entries:
      cells = [_player("input", _asset(evo_dir, out_dir, root,
                                       e["input_wav"]))] if e.get(
                                           "input_wav") else []
      cells += [_player(f"step {step}" + (" (selected)"
                                          if int(step) == selected else ""),
                        _asset(evo_dir, out_dir, root, wav),
                        bool(e.get("dead", {}).get(step, False)))
                for step, wav in sorted(e.get("wavs", {}).items(),
                                        key=lambda t: int(t[0]))]
      rows.append(f'<div class="map"><h4>layer {html.escape(layer)} map '
                  f'{e["map"]}, clip {html.escape(str(e["clip_id"]))}</h4>'
                  f'<div class="players">{"".join(cells)}</div></div>')
    parts.extend(rows)
  return parts


def write_gallery(out_dir: str, models: Dict[str, str],
                  title: str = "sonify_jax listening gallery",
                  max_ranks: int = 3, notes: Optional[str] = None,
                  figures: Optional[Dict[str, str]] = None,
                  evolution: Optional[Dict[str, str]] = None,
                  links: Optional[Dict[str, str]] = None,
                  sanity: Optional[Dict[str, str]] = None,
                  dissect: Optional[Dict[str, str]] = None) -> str:
  """Writes ``out_dir/index.html`` and its assets; returns the page's path.

  Args:
    out_dir: gallery folder (created).
    models: ``{display name: folder of a run_topk output}`` in column order.
    title: page title.
    max_ranks: top clips shown per map.
    notes: optional paragraph of plain text under the title.
    figures: optional ``{caption: png path or (png path, headline)}``
      study figures (e.g. the coherence plot, with its controls) copied
      beside the page and shown above the layers, click to enlarge; the
      headline (one sentence: the result against its control) opens it.
    evolution: optional ``{model name: folder of a run_evolution output}``:
      full-width figures and every step's audio.
    links: optional ``{text: path relative to out_dir}`` of related pages
      (e.g. the atlas page, ``atlas_page.write_atlas_page``).
    sanity: optional ``{model name: folder of a run_sanity output}``: the
      section "Does it depend on the weights?" (a verdict per layer and
      rule, and the figure).
    dissect: optional ``{model name: folder of a run_dissect output}``:
      the section "What do its maps respond to?" (detectors per layer,
      trained vs untrained, and the figure).
  """
  if not models:
    raise ValueError("no models to show")
  # Every index read and checked before anything is written: a torn or
  # edited one stops the gallery with nothing left behind.
  indices = {name: _check_topk(name, path) for name, path in models.items()}
  for name, folder in (sanity or {}).items():
    read_index(os.path.join(folder, "sanity.json"),
               ("figure", "headline", "layers"))
  for name, folder in (dissect or {}).items():
    read_index(os.path.join(folder, "dissect.json"),
               ("figure", "layers", "kinds"))
  for name, folder in (evolution or {}).items():
    read_index(os.path.join(folder, "evolution.json"),
               ("layers", "figures", "steps"))
  os.makedirs(out_dir, exist_ok=True)
  loaded = [_load_model(n, p, out_dir, max_ranks, indices[n])
            for n, p in models.items()]
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
  parts.append(f'<p class="guide"><b>What to compare.</b> {esc(_GUIDE)}</p>')
  parts.append("<p class=\"meta\">" + "; ".join(
      f"{esc(m['name'])}: {esc(m['arch'])} on {esc(m['source'])}"
      f"{esc(m['checkpoint'])}" for m in loaded) + ".</p>")
  for text, href in (links or {}).items():
    parts.append(f'<p><a href="{_url(href)}">{esc(text)}</a></p>')
  if sanity:
    parts.extend(_sanity_html(sanity, out_dir))
  if dissect:
    parts.extend(_dissect_html(dissect, out_dir))
  for i, (caption, png) in enumerate((figures or {}).items()):
    png, headline = png if isinstance(png, tuple) else (png, None)
    rel = os.path.join("assets", "figures", f"{i:02d}_{os.path.basename(png)}")
    _copy(png, os.path.join(out_dir, rel))
    parts.append(_figure_html(rel, caption, wide=_is_wide(png),
                              headline=headline))
  parts.append('<p><label>Layer: <select id="layer-select">'
               '<option value="all">all</option>' +
               "".join(f'<option value="{l}">{l}</option>' for l in layers) +
               "</select></label> <nav>" +
               "".join(f'<a href="#layer{l}">layer {l}</a>' for l in layers) +
               "</nav></p>")
  for layer in layers:
    parts.append(f'<section class="layer" id="layer{layer}" '
                 f'data-layer="{layer}"><h2>Layer {layer}</h2>')
    parts.extend(_same_clip_html(loaded, layer))
    parts.append(f"<h3>Strongest maps, paired by activation rank</h3>"
                 f'<div class="models" style="--n:{len(loaded)}">' +
                 "".join(f'<div class="model"><h3>{esc(m["name"])}</h3>'
                         f"{_controls_line(m, layer)}</div>"
                         for m in loaded) + "</div>")
    ranks = max(len(m["layers"].get(layer, [])) for m in loaded)
    for rank in range(ranks):
      parts.append(f'<div class="models" style="--n:{len(loaded)}">')
      for model in loaded:
        maps = model["layers"].get(layer, [])
        parts.append('<div class="model">')
        if rank >= len(maps):
          parts.append('<p class="meta">not studied for this model</p>')
        else:
          m, clips = maps[rank]
          parts.append(f'<div class="map"><h4>{esc(model["name"])}: '
                       f"strongest map #{rank + 1} (map {m})</h4>")
          parts.extend(_clip_html(model["name"], layer, m, e,
                                  f"rank {e['rank'] + 1}: ") for e in clips)
          parts.append("</div>")
        parts.append("</div>")
      parts.append("</div>")
    parts.append("</section>")
  for name, evo_dir in (evolution or {}).items():
    parts.extend(_evolution_html(name, evo_dir, out_dir))
  parts.append(f"<script>{_JS}</script></body></html>")
  path = os.path.join(out_dir, "index.html")
  atomic_io.write_text(path, "\n".join(parts))
  common.log(f"gallery: {path}")
  return path


def _same_clip_html(loaded: List[Dict[str, Any]], layer: int) -> List[str]:
  """Rows: a clip every model saw; cells: each model's most active map on
  it at this layer, with the controls."""
  clips = None
  for model in loaded:
    ids = set(model["same_clip"].get(layer, {}))
    clips = ids if clips is None else clips & ids
  if not clips:
    return []
  parts = ["<h3>Same clip through each model (its most active map at this "
           "layer)</h3>"]
  for ci in sorted(clips):
    parts.append(f'<div class="models" style="--n:{len(loaded)}">')
    for model in loaded:
      e = model["same_clip"][layer][ci]
      parts.append(f'<div class="model"><h4>{html.escape(model["name"])}'
                   "</h4>" + _clip_html(model["name"], layer, e["map"], e) +
                   "</div>")
    parts.append("</div>")
  return parts
