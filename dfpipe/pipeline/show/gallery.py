"""The static HTML page of `dfpipe show`: a section per video (its label, method, quality,
split and status), its sampled crops each beside the crop with its mask, and filters by
video, label and method that run in the browser (a few lines of inline script, no server,
no network: the page and its img/ folder can be copied anywhere). A query such as
`index.html?label=fake&method=Deepfakes` opens it filtered."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from dfpipe.manifests.schema import FACE_FLAGS
from dfpipe.pipeline.show.sample import ShownVideo

_STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
header{position:sticky;top:0;background:#fff;padding:8px 0;border-bottom:1px solid #ccc;z-index:1}
label{margin-right:12px}
section{margin:14px 0;padding-bottom:8px;border-bottom:1px solid #eee}
h2{font-size:15px;margin:4px 0;word-break:break-all}
.tags span{display:inline-block;font-size:12px;background:#eef;border-radius:3px;padding:1px 6px;margin-right:4px}
.tags span.fake{background:#fdd}.tags span.real{background:#dfd}.tags span.error{background:#f99}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin-top:6px}
figure{margin:0;font-size:11px;color:#555}
figure img{display:block}
.pair{display:flex;gap:2px}
.err{color:#b00;font-size:13px}
body.nomask img.mask{display:none}
"""

_SCRIPT = """
function applyFilters(){
  const v=document.getElementById('f-video').value, l=document.getElementById('f-label').value,
        m=document.getElementById('f-method').value, q=document.getElementById('f-text').value.toLowerCase();
  let shown=0;
  for(const s of document.querySelectorAll('section')){
    const ok=(!v||s.dataset.video===v)&&(!l||s.dataset.label===l)&&(!m||s.dataset.method===m)
             &&(!q||s.dataset.name.toLowerCase().includes(q));
    s.style.display=ok?'':'none'; if(ok) shown++;
  }
  document.getElementById('n-shown').textContent=shown;
}
window.addEventListener('DOMContentLoaded',()=>{  // index.html?label=fake&method=... presets the filters
  const q=new URLSearchParams(location.search);
  for(const k of ['video','label','method','text']) if(q.has(k)) document.getElementById('f-'+k).value=q.get(k);
  applyFilters();
});
function toggleMasks(){document.body.classList.toggle('nomask',!document.getElementById('f-masks').checked)}
"""


def _select(ident: str, title: str, values: list[tuple[str, str]]) -> str:
    options = "".join(f'<option value="{html.escape(v)}">{html.escape(t)}</option>' for v, t in values)
    return (f'<label>{title} <select id="{ident}" onchange="applyFilters()">'
            f'<option value="">all</option>{options}</select></label>')


def _present(value) -> bool:
    """Not null: the index comes through pandas, where a missing value may be NaN."""
    return value is not None and not pd.isna(value)


def _face_caption(face: dict) -> str:
    bits = [f"frame {face['frame_index']}", f"track {face['track_id']}"]
    if _present(face.get("yaw")):
        bits.append(f"yaw {face['yaw']:+.0f}")
    if _present(face.get("mask_source")):
        bits.append(f"mask: {face['mask_source']}")
    flags = [k.removeprefix("flag_") for k in FACE_FLAGS if _present(face.get(k)) and bool(face[k])]
    if flags:
        bits.append("flags: " + ", ".join(flags))
    return html.escape(" · ".join(bits))


def _section(v: ShownVideo, images: dict[str, tuple[str, str | None]], size: int) -> str:
    label, method = v.tag("label"), v.tag("method")
    tags = [(label, label), (method, "method"), (v.tag("compression"), "compression"),
            (v.tag("split"), "split"), (v.tag("status"), v.tag("status"))]
    tag_html = "".join(f'<span class="{html.escape(c)}" title="{html.escape(c)}">{html.escape(t)}</span>'
                       for t, c in tags if t != "-")
    count = f"{len(v.faces)} of {v.n_faces} faces" if v.n_faces else "no faces"
    body = []
    if v.row.get("status") == "error":
        body.append(f'<div class="err">{html.escape(v.tag("error_code"))}: {html.escape(v.tag("error"))}</div>')
    cards = []
    for face in v.faces:
        crop, masked = images[face["face_id"]]
        pair = f'<img src="{crop}" width="{size}" height="{size}" loading="lazy" alt="crop">'
        if masked:
            pair += f'<img class="mask" src="{masked}" width="{size}" height="{size}" loading="lazy" alt="mask">'
        width = size * (2 if masked else 1) + 2
        cards.append(f'<figure style="width:{width}px"><div class="pair">{pair}</div>'
                     f'<figcaption>{_face_caption(face)}</figcaption></figure>')
    if cards:
        body.append(f'<div class="cards">{"".join(cards)}</div>')
    attrs = " ".join(f'data-{k}="{html.escape(val)}"' for k, val in
                     (("video", v.row["video_id"]), ("label", label), ("method", method), ("name", v.name)))
    return (f'<section {attrs}><h2>{html.escape(v.name)}</h2>'
            f'<div class="tags">{tag_html} <span>{count}</span></div>{"".join(body)}</section>')


def write_gallery(shown: list[ShownVideo], images: dict[str, tuple[str, str | None]], out_html: Path,
                  title: str, size: int, sheet_name: str) -> Path:
    """Write the page; `images` maps a face id to its crop's and masked crop's file names
    (relative to the page)."""
    from dfpipe.runtime.files import write_text_atomic

    videos = [(v.row["video_id"], v.name) for v in shown]
    labels = sorted({v.tag("label") for v in shown})
    methods = sorted({v.tag("method") for v in shown})
    n_faces = sum(len(v.faces) for v in shown)
    filters = "".join([
        _select("f-video", "video", videos),
        _select("f-label", "label", [(x, x) for x in labels]),
        _select("f-method", "method", [(x, x) for x in methods]),
        '<label>name contains <input id="f-text" oninput="applyFilters()" size="14"></label>',
        '<label><input type="checkbox" id="f-masks" checked onchange="toggleMasks()"> masks</label>',
    ])
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style><script>{_SCRIPT}</script></head>
<body><header><b>{html.escape(title)}</b> · <span id="n-shown">{len(shown)}</span> of {len(shown)} videos shown ·
{n_faces} faces sampled · <a href="{html.escape(sheet_name)}">contact sheet</a><br>{filters}
<div style="font-size:12px;color:#555">Beside each crop: its mask (red inside, yellow edge), where the dataset has one.</div></header>
{"".join(_section(v, images, size) for v in shown)}
</body></html>
"""
    return write_text_atomic(out_html, page)
