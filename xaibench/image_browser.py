"""The report page's image browser: every scored image of a (dataset, model), sortable and filterable
in the page, and every method's map of the images within a size budget.

The page stays one self-contained file that works offline: the browser is a table drawn by a little
plain JavaScript (:data:`SCRIPT`, no library, no request) from data embedded in the page as JSON:

- per image: its index, id and class, and each method's per-image value of each metric with per-image
  values (:func:`xaibench.comparison.score_table`: the values whose mean is the summary's). Values are
  stored as 16-bit steps of each metric's range over the images (hits and misses as bytes), base64:
  about 2 bytes per (image, method, metric), so 50,000 images x 10 methods x 8 metrics are 8 MB, and
  a value is within 1/131,068 of the metric's range of what ``per_image`` holds;
- the pictures of the images within :data:`PICTURE_BUDGET` bytes: the photo with its ground-truth
  boxes (green) and, for each method, its map over the photo with the CAM box the map gives (white,
  at the run's threshold). They are the run's thumbnails (:mod:`xaibench.thumbnails`: at most 96
  pixels a side, the built-in images at their size), drawn twice their size. The images pictured are
  those on which the methods disagree most (the range of the first metric over the methods), then the
  first by index, half the budget each; the page says how many and why.

Sorting and filtering work on every image (by class, id, a method's value of a metric, or the
methods' disagreement: the range of a metric's values over the methods on one image); the table
shows :data:`ROWS_PER_PAGE` rows at a time, so that 50,000 images draw as fast as 50.

Example:
    >>> quantized([0.0, 0.5, 1.0, float("nan")])[0]
    'AAD/f/7///8='
"""

from __future__ import annotations

import base64
import html
import io
import json

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from xaibench import localization, thumbnails
from xaibench.comparison import Comparison, rows_of, score_table, thumbnails_of
from xaibench.report import DECIMALS
from xaibench.text import displayable
from xaibench.viz import DEFAULT_ALPHA, DEFAULT_CMAP, heatmap_overlay

#: Bytes of pictures (JPEG) the page embeds for its image browsers, all (dataset, model)s together.
PICTURE_BUDGET = 8 * 2**20
#: Rows the browser's table shows at a time.
ROWS_PER_PAGE = 50
#: The step count of a stored value: 16 bits, the top one meaning "no value".
_STEPS = 65534
_NO_VALUE = 65535
#: JPEG quality of the browser's pictures.
JPEG_QUALITY = 85
#: Colours of the boxes: the ground truth, and the box a method's map gives.
TRUTH_COLOUR, BOX_COLOUR = (0, 255, 0), (255, 255, 255)


def quantized(values) -> tuple[str, float, float, bool]:
    """``values`` (NaN: none) as base64 and how to read them back: (text, low, step, binary).

    Hits and misses (every value 0 or the metric's full score, e.g. 0 and 100) are one byte each (255:
    none), other values two bytes, little-endian: ``low + k * step`` for k < 65,535, 65,535 none."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    low = float(finite.min()) if len(finite) else 0.0
    high = float(finite.max()) if len(finite) else 0.0
    if set(np.unique(finite)) <= {low, high} and len(np.unique(finite)) <= 2:
        step = (high - low) or 1.0
        codes = np.where(np.isfinite(values), np.rint((np.nan_to_num(values, nan=low) - low) / step), 255).astype(np.uint8)
        return base64.b64encode(codes.tobytes()).decode("ascii"), low, step, True
    step = (high - low) / _STEPS or 1.0
    codes = np.where(np.isfinite(values), np.rint((np.nan_to_num(values, nan=low) - low) / step), _NO_VALUE)
    return base64.b64encode(codes.astype("<u2").tobytes()).decode("ascii"), low, step, False


def _jpeg(image: np.ndarray) -> str:
    """(h, w, 3) float RGB in [0, 1] as a JPEG ``data:`` URI."""
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8), mode="RGB").save(
        buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _draw_boxes(image: np.ndarray, boxes, scale: tuple[float, float], colour, box=None) -> np.ndarray:
    """The image with the ground-truth ``boxes`` (original pixels, scaled by ``scale`` = (sy, sx)) and
    a method's ``box`` (thumbnail pixels) drawn as one-pixel rectangles."""
    picture = Image.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(picture)
    sy, sx = scale
    for x0, y0, x1, y1 in boxes:
        draw.rectangle([x0 * sx, y0 * sy, (x1 + 1) * sx - 1, (y1 + 1) * sy - 1], outline=colour)
    if box is not None:
        draw.rectangle(list(box), outline=BOX_COLOUR)
    return np.asarray(picture, dtype=np.float32) / 255.0


#: Images whose thumbnails :func:`_pictures` reads at a time (it stops reading once its budget is spent).
_PICTURE_CHUNK = 128


def _pictures(comparison: Comparison, dataset: str, model: str, indices: list[int], methods: list[str], *,
              budget: int, cmap: str, alpha: float, tau: float) -> tuple[dict[str, dict], int]:
    """The photo and every method's map of ``indices`` in order, until ``budget`` bytes are spent:
    {index: {"photo": uri, "maps": {method: uri}}} and the bytes spent. The thumbnails are read
    :data:`_PICTURE_CHUNK` images at a time, so no more are read than the budget has room for."""
    out, spent = {}, 0
    if comparison.images.empty or comparison.maps.empty:
        return out, spent
    for start in range(0, len(indices), _PICTURE_CHUNK):
        chunk = indices[start:start + _PICTURE_CHUNK]
        images = thumbnails_of(comparison, dataset, model, "images", pd.DataFrame({"index": chunk})).set_index("index")
        maps = thumbnails_of(comparison, dataset, model, "maps", pd.DataFrame(
            [(i, m) for i in chunk for m in methods], columns=["index", "method"])).set_index(["index", "method"])["map"]
        for index in chunk:
            if index not in images.index:
                continue
            picture = _picture(images.loc[index], maps, index, methods, cmap=cmap, alpha=alpha, tau=tau)
            size = len(picture["photo"]) + sum(len(uri) for uri in picture["maps"].values())
            if spent + size > budget:
                return out, spent
            out[str(int(index))] = picture
            spent += size
    return out, spent


def _picture(row: pd.Series, maps: pd.Series, index: int, methods: list[str], *, cmap: str, alpha: float,
             tau: float) -> dict:
    """One image's pictures: its photo with the ground truth, and each method's map over it with its box."""
    image = thumbnails.at_own_aspect(thumbnails.decode_jpeg(row.jpeg), *thumbnails.photo_size(row))
    scale = (image.shape[0] / int(row.height), image.shape[1] / int(row.width))
    boxes = [tuple(float(v) for v in b) for b in row.boxes]
    picture = {"photo": _jpeg(_draw_boxes(image, boxes, scale, TRUTH_COLOUR)), "maps": {}}
    for method in methods:
        if (index, method) not in maps.index:
            continue
        saliency = thumbnails.map_image(maps.loc[(index, method)], image.shape[:2])
        overlay = heatmap_overlay(image, saliency, cmap=cmap, alpha=alpha)
        picture["maps"][method] = _jpeg(_draw_boxes(overlay, boxes, scale, TRUTH_COLOUR, localization.cam_box(saliency, tau)))
    return picture


def browser_data(comparison: Comparison, dataset: str, model: str, *, budget: int = PICTURE_BUDGET,
                 cmap: str = DEFAULT_CMAP, alpha: float = DEFAULT_ALPHA, tau: float = localization.CAM_TAU) -> dict | None:
    """What the browser of (dataset, model) embeds (see the module's docstring); None where no metric
    has per-image values."""
    metrics, columns = [], {}
    methods = list(dict.fromkeys(comparison.summary[(comparison.summary.dataset == dataset)
                                                    & (comparison.summary.model == model)].method))
    for name in dict.fromkeys(comparison.summary.metric):
        metric = comparison.metrics.get(name)
        if metric is None or metric.family == "classification":
            continue
        table = score_table(comparison, dataset, model, metric)
        if table.empty:
            continue
        columns[name] = table
        metrics.append(metric)
    if not metrics:
        return None
    rows = rows_of(comparison.per_image, dataset, model, ["dataset", "model", "index", "image_id", "label"])
    images = rows.drop_duplicates("index").sort_values("index", kind="stable")
    order = images["index"].to_numpy(dtype=np.int64)
    shown = comparison.images
    names = {}
    if not shown.empty:
        shown = shown[(shown.dataset == dataset) & (shown.model == model)]
        names = dict(zip(shown["index"].astype(int), shown.class_name))
    labels = [names.get(int(i), str(int(label))) for i, label in zip(order, images.label)]
    classes = sorted(set(labels))
    class_code = {c: k for k, c in enumerate(classes)}
    values, first, first_name = {}, None, metrics[0].name
    for metric in metrics:
        table = columns[metric.name].reindex(index=order, columns=methods)
        text, low, step, binary = quantized(table.to_numpy(dtype=np.float64).ravel())
        values[metric.name] = {"data": text, "low": low, "step": step, "binary": binary}
        if first is None and not binary:
            first, first_name = table, metric.name
    first = first if first is not None else columns[metrics[0].name].reindex(index=order, columns=methods)
    spread = (first.max(axis=1) - first.min(axis=1)).fillna(-1.0)
    disagreeing = [int(i) for i in spread.sort_values(ascending=False, kind="stable").index if spread[i] > 0]
    pictures, spent = _pictures(comparison, dataset, model, disagreeing, methods, budget=budget // 2,
                                cmap=cmap, alpha=alpha, tau=tau)
    rest = [int(i) for i in order if str(int(i)) not in pictures]
    more, spent_more = _pictures(comparison, dataset, model, rest, methods, budget=budget - spent,
                                 cmap=cmap, alpha=alpha, tau=tau)
    pictures.update(more)
    return {
        "dataset": dataset, "model": model, "methods": methods,
        "metrics": [{"name": m.name, "title": m.title, "unit": m.unit, "higher": m.higher_is_better,
                     "decimals": DECIMALS.get(m.unit, 3)} for m in metrics],
        "index": [int(i) for i in order], "id": [displayable(str(i)) for i in images.image_id],
        "classes": classes, "label": [class_code[c] for c in labels], "values": values,
        "pictures": pictures, "picture_bytes": spent + spent_more, "budget": budget,
        "spread": first_name,
    }


def budget_note(data: dict) -> str:
    """What the browser says of its pictures: how many, which, and the budget."""
    n, pictured = len(data["index"]), len(data["pictures"])
    return (f"{n:,} images: sort and filter them, click one to see its values and, where the page has them, every "
            f"method's map. Pictures (the run's thumbnails, shown twice their size: the photo with its ground truth in "
            f"green, each method's map with its box in white) of {pictured:,} images, {data['picture_bytes'] / 2**20:.1f} "
            f"MB within a budget of {data['budget'] / 2**20:.1f} MB: those on which the methods' {data['spread']} "
            "differs most, then the first by index. Values are stored to 1/65,534 of each metric's range.")


def colour_bar(cmap: str = DEFAULT_CMAP, stops: int = 11) -> str:
    """A CSS ``linear-gradient`` of the colour map, for the page's colour bar of the maps."""
    from matplotlib import colormaps

    colours = colormaps[cmap](np.linspace(0, 1, stops))[:, :3]
    return "linear-gradient(to right, " + ", ".join(
        "#" + "".join(f"{round(c * 255):02x}" for c in rgb) for rgb in colours) + ")"


def browser_html(data: dict, key: str, *, cmap: str = DEFAULT_CMAP) -> str:
    """The browser of one (dataset, model) as a section of the page (``key`` tells its parts apart);
    :data:`SCRIPT`, once on the page, brings every section to life."""
    blob = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")  # no "</script>" in it
    return (f'<section class=browser id="browser-{html.escape(key)}"><h3>Images</h3>'
            f"<p class=note>{html.escape(budget_note(data))}</p>"
            '<div class=controls><label>Class <select data-role=class><option value="">every class</option></select></label>'
            "<label>Metric <select data-role=metric></select></label>"
            "<label>Sort <select data-role=sort></select></label>"
            "<label>Id <input type=search data-role=search size=12></label>"
            "<label><input type=checkbox data-role=pictured> with pictures</label></div>"
            "<p class=note data-role=count></p>"
            '<div class=scroll><table data-role=table><thead></thead><tbody></tbody></table></div>'
            '<div class=pager><button type=button data-role=prev>previous</button> <span data-role=page></span> '
            "<button type=button data-role=next>next</button></div>"
            f'<div class=detail data-role=detail hidden><div class=colourbar><span>0</span>'
            f'<span class=bar style="background: {colour_bar(cmap)}"></span><span>1</span> '
            "<span class=note>map value (min-max scaled)</span></div><div data-role=body></div></div>"
            f"<script type=application/json data-role=data>{blob}</script></section>")


#: The browser's style (added to the page's).
STYLE = """
.browser .controls { display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 0.9em; margin: 0.4em 0; }
.browser select, .browser input[type=search] { max-width: 100%; font: inherit; }
.browser tbody tr { cursor: pointer; } .browser tbody tr:hover td { background: #f4f4ff; }
.browser tbody tr.chosen td { background: #e6e6ff; }
.browser .pager { font-size: 0.9em; margin: 0.3em 0; }
.browser .detail { border: 1px solid #ccc; padding: 6px; margin: 0.6em 0; }
.browser .maps { display: flex; flex-wrap: wrap; gap: 8px; }
.browser .maps figure { margin: 0; max-width: 100%; } .browser .maps img { image-rendering: auto; }
.browser .maps figcaption { max-width: 200px; overflow-wrap: anywhere; }
.browser .colourbar { display: flex; align-items: center; gap: 4px; font-size: 0.8em; flex-wrap: wrap; }
.browser .colourbar .bar { display: inline-block; width: 160px; max-width: 40vw; height: 10px; border: 1px solid #999; }
"""

#: The browser's code: plain JavaScript, no library, no request; every text set as text, never as HTML.
SCRIPT = r"""
(function () {
  "use strict";
  function decode(v, n) {
    var bin = atob(v.data), out = new Float64Array(n), i;
    var bytes = new Uint8Array(bin.length);
    for (i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    if (v.binary) {
      for (i = 0; i < n; i++) out[i] = bytes[i] === 255 ? NaN : v.low + bytes[i] * v.step;
    } else {
      var view = new DataView(bytes.buffer);
      for (i = 0; i < n; i++) { var k = view.getUint16(2 * i, true); out[i] = k === 65535 ? NaN : v.low + k * v.step; }
    }
    return out;
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function option(select, value, text) { var o = el("option", text); o.value = value; select.appendChild(o); }
  function setUp(section) {
    var data = JSON.parse(section.querySelector("[data-role=data]").textContent);
    var $ = function (role) { return section.querySelector("[data-role=" + role + "]"); };
    var n = data.index.length, m = data.methods.length, values = {}, spreads = {};
    data.metrics.forEach(function (metric) { values[metric.name] = decode(data.values[metric.name], n * m); });
    function spread(name) {
      if (!spreads[name]) {
        var v = values[name], s = new Float64Array(n);
        for (var r = 0; r < n; r++) {
          var lo = Infinity, hi = -Infinity;
          for (var c = 0; c < m; c++) { var x = v[r * m + c]; if (x === x) { if (x < lo) lo = x; if (x > hi) hi = x; } }
          s[r] = hi >= lo ? hi - lo : NaN;
        }
        spreads[name] = s;
      }
      return spreads[name];
    }
    var state = { metric: 0, sort: "index", cls: "", search: "", pictured: false, page: 0, rows: [] };
    data.classes.forEach(function (c, k) { option($("class"), String(k), c); });
    data.metrics.forEach(function (metric, k) { option($("metric"), String(k), metric.title + " (" + metric.name + ")"); });
    function sorts() {
      var select = $("sort"), metric = data.metrics[state.metric];
      select.textContent = "";
      option(select, "index", "index");
      option(select, "class", "class");
      option(select, "spread", "disagreement: largest range over the methods first");
      data.methods.forEach(function (method, c) {
        option(select, "best:" + c, method + ": best first");
        option(select, "worst:" + c, method + ": worst first");
      });
      select.value = state.sort;
      if (select.value !== state.sort) { state.sort = "index"; select.value = "index"; }
    }
    function format(x, metric) { return x === x ? x.toFixed(metric.decimals) : ""; }
    function refresh() {
      var metric = data.metrics[state.metric], v = values[metric.name], rows = [];
      var cls = state.cls === "" ? -1 : Number(state.cls), text = state.search.toLowerCase();
      for (var r = 0; r < n; r++) {
        if (cls >= 0 && data.label[r] !== cls) continue;
        if (state.pictured && !data.pictures[data.index[r]]) continue;
        if (text && String(data.id[r]).toLowerCase().indexOf(text) < 0) continue;
        rows.push(r);
      }
      var key = null, down = false;
      if (state.sort === "spread") { key = spread(metric.name); down = true; }
      else if (state.sort === "class") { rows.sort(function (a, b) { return data.classes[data.label[a]] < data.classes[data.label[b]] ? -1 : data.classes[data.label[a]] > data.classes[data.label[b]] ? 1 : a - b; }); }
      else if (state.sort !== "index") {
        var parts = state.sort.split(":"), c = Number(parts[1]), higher = metric.higher !== false;
        key = new Float64Array(n);
        for (var i = 0; i < n; i++) key[i] = v[i * m + c];
        down = (parts[0] === "best") === higher;
      }
      if (key) {
        rows.sort(function (a, b) {
          var x = key[a], y = key[b];
          if (x !== x) return y !== y ? a - b : 1;
          if (y !== y) return -1;
          return x === y ? a - b : (down ? y - x : x - y);
        });
      }
      state.rows = rows;
      var pages = Math.max(1, Math.ceil(rows.length / ROWS));
      state.page = Math.min(state.page, pages - 1);
      $("count").textContent = rows.length.toLocaleString("en") + " of " + n.toLocaleString("en") + " images; " +
        metric.title + " in " + metric.unit + (metric.higher === null ? "" : metric.higher ? ", higher is better" : ", lower is better") +
        "; range: its largest minus smallest value over the methods on the image.";
      $("page").textContent = "page " + (state.page + 1) + " of " + pages;
      $("prev").disabled = state.page === 0;
      $("next").disabled = state.page >= pages - 1;
      var head = $("table").tHead, body = $("table").tBodies[0], tr = el("tr");
      head.textContent = ""; body.textContent = "";
      ["index", "id", "class"].concat(data.methods, ["range", "pictures"]).forEach(function (h) { tr.appendChild(el("th", h)); });
      head.appendChild(tr);
      var s = spread(metric.name);
      rows.slice(state.page * ROWS, (state.page + 1) * ROWS).forEach(function (r) {
        var row = el("tr");
        row.dataset.row = String(r);
        [String(data.index[r]), data.id[r], data.classes[data.label[r]]].forEach(function (t) { row.appendChild(el("td", t)); });
        for (var c = 0; c < m; c++) row.appendChild(el("td", format(v[r * m + c], metric)));
        row.appendChild(el("td", format(s[r], metric)));
        row.appendChild(el("td", data.pictures[data.index[r]] ? "yes" : ""));
        row.addEventListener("click", function () { show(r); });
        body.appendChild(row);
      });
    }
    function show(r) {
      var detail = $("detail"), body = $("body"), picture = data.pictures[data.index[r]];
      Array.prototype.forEach.call(section.querySelectorAll("tbody tr"), function (row) {
        row.classList.toggle("chosen", row.dataset.row === String(r));
      });
      body.textContent = "";
      body.appendChild(el("h4", "Image " + data.id[r] + " (index " + data.index[r] + "), class " + data.classes[data.label[r]]));
      if (picture) {
        var maps = el("div", null, "maps");
        var figure = function (src, caption) {
          var f = el("figure"), img = el("img");
          img.src = src; img.alt = caption;
          img.addEventListener("load", function () { img.width = Math.min(2 * img.naturalWidth, 400); });
          f.appendChild(img); f.appendChild(el("figcaption", caption)); maps.appendChild(f);
        };
        figure(picture.photo, "photo, ground truth");
        data.methods.forEach(function (method, c) {
          if (!picture.maps[method]) return;
          var metric = data.metrics[state.metric];
          figure(picture.maps[method], method + ": " + format(values[metric.name][r * m + c], metric) + " " + metric.unit);
        });
        body.appendChild(maps);
      } else {
        body.appendChild(el("p", "This page keeps no pictures of this image (its budget); its values:", "note"));
      }
      var table = el("table"), head = el("tr");
      ["method"].concat(data.metrics.map(function (x) { return x.name + " (" + x.unit + ")"; })).forEach(function (h) { head.appendChild(el("th", h)); });
      table.appendChild(el("thead")).appendChild(head);
      var tbody = table.appendChild(el("tbody"));
      data.methods.forEach(function (method, c) {
        var row = el("tr");
        row.appendChild(el("td", method));
        data.metrics.forEach(function (metric) { row.appendChild(el("td", format(values[metric.name][r * m + c], metric))); });
        tbody.appendChild(row);
      });
      var box = el("div", null, "scroll"); box.appendChild(table); body.appendChild(box);
      detail.hidden = false;
    }
    $("class").addEventListener("change", function (e) { state.cls = e.target.value; state.page = 0; refresh(); });
    $("metric").addEventListener("change", function (e) { state.metric = Number(e.target.value); sorts(); state.page = 0; refresh(); });
    $("sort").addEventListener("change", function (e) { state.sort = e.target.value; state.page = 0; refresh(); });
    $("search").addEventListener("input", function (e) { state.search = e.target.value; state.page = 0; refresh(); });
    $("pictured").addEventListener("change", function (e) { state.pictured = e.target.checked; state.page = 0; refresh(); });
    $("prev").addEventListener("click", function () { state.page -= 1; refresh(); });
    $("next").addEventListener("click", function () { state.page += 1; refresh(); });
    sorts();
    refresh();
  }
  var ROWS = __ROWS__;
  Array.prototype.forEach.call(document.querySelectorAll("section.browser"), setUp);
})();
""".replace("__ROWS__", str(ROWS_PER_PAGE))
