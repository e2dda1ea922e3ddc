"""Atlas browser: one offline page over the ``atlas.json`` of one or more
atlas studies (``atlas.run_atlas``).

``write_atlas_page(site_dir, {'contrastive': atlas_dir_a, ...})`` writes
``site_dir/atlas.html`` and ``site_dir/atlas_data.js``. Nothing is copied:
the page refers to each atlas' WAVs and PNGs by relative path (keep the
atlas folders inside or beside ``site_dir``), and works from ``file://``.

The full CNN12 atlas is ~6,000 maps and ~30,000 sonifications, so the page
never builds them all:

* the index travels as data (``atlas_data.js`` sets ``window.ATLAS_DATA``; a
  script file rather than ``fetch()``, which browsers refuse on ``file://``),
  compact rows of ``[layer, map, dead, activation, centroid, top]``;
* filters (model, layer, live/dead, minimum activation, spectral centroid
  range) and the sort run over that array; only the first rows of the result
  are rendered, and more are appended when a sentinel below them scrolls into
  view (IntersectionObserver);
* audio players are ``preload="none"`` and spectrograms ``loading="lazy"``:
  nothing is fetched until it is on screen or played.
"""
import html
import os
from typing import Dict, Optional

from sonify_jax import atomic_io
from sonify_jax.analysis.core import common

_CSS = """
body{font-family:system-ui,sans-serif;margin:1em 2em;background:#fafafa;
color:#222}
h1{font-size:1.4em}
#controls{position:sticky;top:0;background:#fafafa;padding:.5em 0;
border-bottom:1px solid #ccc;display:flex;flex-wrap:wrap;gap:.8em;
align-items:end;z-index:1;font-size:.9em}
#controls label{display:flex;flex-direction:column}
#controls input{width:7em}
.map{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.4em;
margin:.6em 0}
.map h3{margin:.1em 0 .4em;font-size:.95em}
table.side{border-collapse:collapse;font-size:.85em;margin:.5em 0}
table.side th,table.side td{border:1px solid #ccc;padding:.2em .5em;
text-align:right}
.map.dead h3{color:#999}
.clips{display:flex;gap:.6em;overflow-x:auto}
.clip{flex:0 0 15em;font-size:.75em}
.clip img{width:100%;height:5em;object-fit:fill;display:block;
background:#eee;image-rendering:pixelated}
.clip audio{width:100%;height:2em}
.meta{color:#666;font-size:.85em}
.explain{background:#f3f7fb}
.tuning{width:100%;height:3em;display:block}
#sentinel{height:2em}
"""

_JS = r"""
(function(){
  'use strict';
  var data = window.ATLAS_DATA, PAGE = 40;
  var rows = [];
  data.models.forEach(function(model, mi){
    model.rows.forEach(function(r){
      rows.push({model: mi, layer: r[0], map: r[1], dead: r[2] === 1,
                 act: r[3], cent: r[4], top: r[5], explain: r[6]});
    });
  });
  var $ = function(id){ return document.getElementById(id); };
  var list = $('maps'), count = $('count'), sentinel = $('sentinel');
  var shown = [], rendered = 0;
  function num(id){
    var v = $(id).value.trim();
    return v === '' ? null : Number(v);
  }
  function filter(){
    var model = $('f-model').value, layer = $('f-layer').value,
        status = $('f-status').value, minAct = num('f-act'),
        cmin = num('f-cmin'), cmax = num('f-cmax'), sort = $('f-sort').value;
    shown = rows.filter(function(r){
      if (model !== 'all' && r.model !== Number(model)) return false;
      if (layer !== 'all' && r.layer !== Number(layer)) return false;
      if (status === 'live' && r.dead) return false;
      if (status === 'dead' && !r.dead) return false;
      if (minAct !== null && !(r.act !== null && r.act >= minAct)) return false;
      if (cmin !== null && !(r.cent !== null && r.cent >= cmin)) return false;
      if (cmax !== null && !(r.cent !== null && r.cent <= cmax)) return false;
      return true;
    });
    if (sort === 'activation') {
      shown.sort(function(a, b){ return (b.act || 0) - (a.act || 0); });
    } else if (sort === 'centroid') {
      shown.sort(function(a, b){
        return (a.cent === null) - (b.cent === null) || a.cent - b.cent; });
    }
    list.textContent = '';
    rendered = 0;
    count.textContent = shown.length + ' of ' + rows.length + ' maps';
    more();
  }
  function fmt(v, digits){ return v === null ? 'n/a' : v.toPrecision(digits); }
  function el(tag, attrs, text){
    var e = document.createElement(tag);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function player(label, src){
    var d = el('div', {});
    d.appendChild(el('div', {'class': 'meta'}, label));
    d.appendChild(el('audio', {controls: '', preload: 'none', src: src}));
    return d;
  }
  // The map's visualization, its dissection label (trained, untrained),
  // how much survives re-initialisation, and its tone tuning curve.
  function explainBox(model, e){
    var c = el('div', {'class': 'clip explain'});
    c.appendChild(el('div', {}, 'visualization \u00b7 ' + e[2] +
        (e[4] ? ' (detector, IoU ' : ' (IoU ') + fmt(e[3], 2) + ')'));
    c.appendChild(el('img', {src: model.base + e[1], loading: 'lazy',
                             alt: 'visualization spectrogram'}));
    c.appendChild(player('visualization', model.base + e[0]));
    c.appendChild(el('div', {'class': 'meta'}, 'untrained: ' + e[5] +
        ' (IoU ' + fmt(e[6], 2) + '); survives re-init: |xcorr| ' +
        fmt(e[7], 2) + ', spectrum r ' + fmt(e[8], 2)));
    c.appendChild(curve(e[9], model.f0_grid));
    return c;
  }
  function curve(values, grid){
    var ns = 'http://www.w3.org/2000/svg', w = 200, h = 40;
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    svg.setAttribute('class', 'tuning');
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    var pts = values.map(function(v, i){
      return (i * w / (values.length - 1)).toFixed(1) + ',' +
             (h - 2 - (hi > lo ? (v - lo) / (hi - lo) : 0) * (h - 4)).toFixed(1);
    });
    var line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', pts.join(' '));
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', '#1f77b4');
    svg.appendChild(line);
    var title = document.createElementNS(ns, 'title');
    title.textContent = 'tone tuning curve, ' + Math.round(grid[0]) + '-' +
        Math.round(grid[grid.length - 1]) + ' Hz (log)';
    svg.appendChild(title);
    return svg;
  }
  function renderRow(r){
    var model = data.models[r.model], base = model.base;
    var box = el('div', {'class': 'map' + (r.dead ? ' dead' : ''),
                         'data-layer': r.layer, 'data-map': r.map});
    box.appendChild(el('h3', {}, (data.models.length > 1 ? model.name +
        ' \u00b7 ' : '') + 'layer ' + r.layer + ' \u00b7 map ' + r.map +
        ' \u00b7 ' + (r.dead ? 'dead' : 'live') + ' \u00b7 top activation ' +
        fmt(r.act, 3) + ' \u00b7 centroid ' +
        (r.cent === null ? 'n/a' : Math.round(r.cent) + ' Hz')));
    var clips = el('div', {'class': 'clips'});
    if (r.explain) { clips.appendChild(explainBox(model, r.explain)); }
    r.top.forEach(function(t, rank){
      var clip = model.clips[t[0]], c = el('div', {'class': 'clip'});
      c.appendChild(el('div', {}, '#' + (rank + 1) + ' ' + clip[0] +
          ' (act ' + fmt(t[1], 3) + (t[4] === null ? '' : ', ' +
          Math.round(t[4]) + ' Hz') + ')'));
      c.appendChild(el('img', {src: base + clip[2], loading: 'lazy',
                               alt: 'input spectrogram'}));
      c.appendChild(player('input', base + clip[1]));
      if (t[2] !== null) {
        c.appendChild(el('img', {src: base + t[3], loading: 'lazy',
                                 alt: 'sonification spectrogram'}));
        c.appendChild(player('sonification', base + t[2]));
      } else {
        c.appendChild(el('div', {'class': 'meta'}, 'silent: not sonified'));
      }
      clips.appendChild(c);
    });
    box.appendChild(clips);
    return box;
  }
  function more(){
    var end = Math.min(rendered + PAGE, shown.length);
    var frag = document.createDocumentFragment();
    for (; rendered < end; rendered++) { frag.appendChild(renderRow(shown[rendered])); }
    list.appendChild(frag);
    sentinel.style.display = rendered < shown.length ? 'block' : 'none';
  }
  new IntersectionObserver(function(entries){
    if (entries.some(function(e){ return e.isIntersecting; }) &&
        rendered < shown.length) { more(); }
  }, {rootMargin: '800px'}).observe(sentinel);
  var timer = null;
  function later(){ clearTimeout(timer); timer = setTimeout(filter, 150); }
  ['f-model', 'f-layer', 'f-status', 'f-sort'].forEach(function(id){
    $(id).addEventListener('change', filter); });
  ['f-act', 'f-cmin', 'f-cmax'].forEach(function(id){
    $(id).addEventListener('input', later); });
  // Only one clip plays at a time: starting one pauses the others.
  document.addEventListener('play', function(e){
    document.querySelectorAll('audio').forEach(function(a){
      if (a !== e.target) { a.pause(); } });
  }, true);
  window.atlasFilter = filter;  // for tests and the console
  filter();
})();
"""

# The file of an atlas study's folder that this page reads (the study,
# studies/atlas.py, writes it under this name).
INDEX = "atlas.json"
EXPLAIN = "explain.json"   # analysis/core/explain.py, per layer folder


def _url(path: str) -> str:
  from urllib.parse import quote  # pylint: disable=g-import-not-at-top
  return quote(path.replace(os.sep, "/"))


def _model_data(name: str, atlas_dir: str, site_dir: str) -> Dict:
  path = os.path.join(atlas_dir, INDEX)
  try:
    with open(path) as f:
      import json  # pylint: disable=g-import-not-at-top
      index = json.load(f)
  except OSError:
    raise FileNotFoundError(f"{name}: no {INDEX} in {atlas_dir} (run "
                            "the atlas study first)") from None
  base = os.path.relpath(atlas_dir, site_dir)
  base = "" if base == "." else _url(base) + "/"
  clips = {ci: [c["id"], _url(c["wav"]), _url(c["png"]), c["seconds"]]
           for ci, c in index["clips"].items()}
  rows = []
  f0_grid = None
  for part in index["layers"]:
    explained = _explained(atlas_dir, part["layer"])
    if explained:
      f0_grid = explained["f0_grid"]
    for m in part["maps"]:
      top = [[str(r["clip"]), r["activation"],
              _url(r["wav"]) if r["wav"] else None,
              _url(r["png"]) if r["png"] else None, r["centroid_hz"]]
             for r in m["top"]]
      rows.append([part["layer"], m["map"], int(m["dead"]), m["activation"],
                   m["centroid_hz"], top,
                   _explain_row(explained, part["layer"], m["map"])])
  return {"name": name, "arch": index["arch"], "source": index["source"],
          "sample_rate": index.get("sample_rate"), "k": index["k"], "rule": index.get("rule", "deconvnet"),
          "base": base, "clips": clips, "rows": rows, "f0_grid": f0_grid}


def _explained(atlas_dir: str, layer: int) -> Optional[Dict]:
  """A layer's explain.json (analysis/core/explain.py), or None."""
  import json  # pylint: disable=g-import-not-at-top
  path = os.path.join(atlas_dir, f"layer{layer:02d}", EXPLAIN)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def _explain_row(explained: Optional[Dict], layer: int, m: int):
  """``[wav, png, label, iou, detector, untrained label, untrained iou,
  survives (largest |xcorr|), survives (spectrum rank r), tone curve]`` or
  None."""
  if not explained or m >= len(explained["maps"]):
    return None
  e = explained["maps"][m]
  prefix = f"layer{layer:02d}/"
  return [_url(prefix + e["wav"]), _url(prefix + e["png"]),
          e["trained"]["label"], e["trained"]["iou"],
          int(e["trained"]["detector"]), e["untrained"]["label"],
          e["untrained"]["iou"], e["survives"]["max_abs_xcorr"],
          e["survives"]["spectrum_spearman"], e["tone_curve"]]


def _side_by_side(models) -> str:
  """One column per model: its network, rate, and per layer its maps (live
  / all), so atlases of different networks read side by side."""
  esc = html.escape
  layers = sorted({r[0] for m in models for r in m["rows"]})
  head = "".join(f"<th>{esc(m['name'])}</th>" for m in models)

  def cell(m, layer):
    rows = [r for r in m["rows"] if r[0] == layer]
    if not rows:
      return "<td>&ndash;</td>"
    live = sum(1 for r in rows if not r[2])
    return f"<td>{live} / {len(rows)}</td>"
  body = ["<tr><th>network</th>" + "".join(
      f"<td>{esc(m['arch'])}</td>" for m in models) + "</tr>",
          "<tr><th>sample rate</th>" + "".join(
              f"<td>{m['sample_rate'] or '?'} Hz</td>" for m in models)
          + "</tr>"]
  body += [f"<tr><th>layer {l}: live / all maps</th>"
           + "".join(cell(m, l) for m in models) + "</tr>" for l in layers]
  return (f'<table class="side"><tr><th></th>{head}</tr>'
          + "".join(body) + "</table>")


def write_atlas_page(site_dir: str, atlases: Dict[str, str],
                     title: str = "sonify_jax atlas",
                     notes: Optional[str] = None) -> str:
  """Writes ``site_dir/atlas.html`` + ``atlas_data.js``; returns the page.

  Args:
    site_dir: folder of the page (created).
    atlases: ``{display name: atlas study folder}``.
    title: page title.
    notes: optional paragraph of plain text under the title.
  """
  if not atlases:
    raise ValueError("no atlases to show")
  os.makedirs(site_dir, exist_ok=True)
  models = [_model_data(n, p, site_dir) for n, p in atlases.items()]
  atomic_io.write_text(
      os.path.join(site_dir, "atlas_data.js"),
      "window.ATLAS_DATA = " + atomic_io.dumps({"models": models}) + ";\n")
  layers = sorted({r[0] for m in models for r in m["rows"]})
  esc = html.escape
  options = lambda items: "".join(
      f'<option value="{esc(str(v))}">{esc(str(t))}</option>'
      for v, t in items)
  summary = "; ".join(
      f"{esc(m['name'])}: {esc(m['arch'])} on {esc(m['source'])}, "
      f"{len(m['rows'])} maps, top {m['k']} clips each, {esc(m['rule'])} "
      "sonifications" for m in models)
  page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{esc(title)}</title><style>{_CSS}</style></head><body>
<h1>{esc(title)}</h1>
{f'<p>{esc(notes)}</p>' if notes else ''}
<p class="meta">{summary}. Each map: its top clips (input) and the
sonification of that map alone on each; where the atlas was run with
--explain, first the map's feature visualization, its dissection label
(trained and untrained), how much of the visualization survives
re-initialisation and its tone tuning curve. Dead maps never fire on the
data.</p>
{_side_by_side(models) if len(models) > 1 else ''}
<div id="controls">
<label>model<select id="f-model">{options([("all", "all")] +
    [(i, m["name"]) for i, m in enumerate(models)])}</select></label>
<label>layer<select id="f-layer">{options([("all", "all")] +
    [(l, l) for l in layers])}</select></label>
<label>maps<select id="f-status">{options([("all", "all"), ("live", "live"),
    ("dead", "dead")])}</select></label>
<label>top activation &ge;<input id="f-act" type="number" step="any"></label>
<label>centroid &ge; Hz<input id="f-cmin" type="number" step="any"></label>
<label>centroid &le; Hz<input id="f-cmax" type="number" step="any"></label>
<label>sort<select id="f-sort">{options([("layer", "layer, map"),
    ("activation", "activation"), ("centroid", "centroid")])}</select></label>
<span id="count" class="meta"></span>
</div>
<div id="maps"></div><div id="sentinel"></div>
<script src="atlas_data.js"></script>
<script>{_JS}</script>
</body></html>
"""
  path = atomic_io.write_text(os.path.join(site_dir, "atlas.html"), page)
  common.log(f"atlas page: {path}")
  return path
