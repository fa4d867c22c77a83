"""The benchmark's dataset card: `card/index.html` (static, opens from disk) and `card/card.md`.

Everything on it is read back from what the build wrote: counts from the merged dataset's
videos and faces, quality from its `quality/` tables, detector results from each
`eval/<detector>/<split>/metrics.json`, times from `build.json`, and the recipe as written.
Pictures (sample grids, quality plots, ROC curves, the t-SNE plot) are PNGs in `card/`,
linked by relative paths, so the folder can be copied or published as it is.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dfpipe.build.plan import Layout
from dfpipe.build.recipe import Recipe
from dfpipe.build.splits import identity_leaks, people_of
from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA

#: faces shown per method in the sample grids (one a video)
SAMPLES = 8
THUMB = 128


def counts_tables(dataset: Path) -> dict[str, pd.DataFrame]:
    """Videos and faces by split and label, by method and compression, identities by split."""
    videos = read_table(dataset, "videos", VIDEOS_SCHEMA).to_pandas()
    faces = read_table(dataset, "faces", FACES_SCHEMA, columns=["video_id"]).to_pandas()
    n_faces = faces.groupby("video_id").size()
    ok = videos[videos["status"] == "ok"].copy()
    ok["faces"] = ok["video_id"].map(n_faces).fillna(0).astype(int)
    ok["split"] = ok["split"].fillna("-")
    ok["method"] = np.where(ok["label"] == "real", "real", ok["method"].fillna("unknown"))
    ok["compression"] = ok["compression"].fillna("-")
    by_split = ok.pivot_table(index="split", columns="label", values="video_id", aggfunc="count", fill_value=0)
    by_split["faces"] = ok.groupby("split")["faces"].sum()
    by_method = ok.groupby(["method", "compression"]).agg(videos=("video_id", "count"), faces=("faces", "sum"))
    people = []
    for split, rows in ok.groupby("split"):
        names = set()
        for meta in rows.loc[rows["label"] == "real", "meta"]:
            names |= set(people_of(meta))
        people.append({"split": split, "identities": len(names), "videos": len(rows)})
    errors = videos[videos["status"] == "error"]
    error_table = errors.groupby(errors["error_code"].fillna("-")).size().rename("videos").reset_index()
    return {"by split": by_split.reset_index(), "by method and compression": by_method.reset_index(),
            "identities": pd.DataFrame(people), "per identity": per_identity(ok), "errors": error_table}


def per_identity(videos: pd.DataFrame) -> pd.DataFrame:
    """A row per person: split, real videos, fakes shown on them (target) and made of them (source)."""
    reals = videos[videos["label"] == "real"]
    person_of = {vid: people_of(meta)[0] for vid, meta in zip(reals["video_id"], reals["meta"]) if people_of(meta)}
    rows: dict[str, dict[str, Any]] = {}
    for r in videos.itertuples():
        if r.video_id in person_of:
            row = rows.setdefault(person_of[r.video_id], {"identity": person_of[r.video_id], "split": r.split,
                                                           "real videos": 0, "fakes onto": 0, "fakes from": 0})
            row["real videos"] += 1
    for r in videos[videos["label"] == "fake"].itertuples():
        for col, key in (("target_video_id", "fakes onto"), ("source_video_id", "fakes from")):
            person = person_of.get(getattr(r, col))
            if person in rows:
                rows[person][key] += 1
    return pd.DataFrame(sorted(rows.values(), key=lambda r: r["identity"]),
                        columns=["identity", "split", "real videos", "fakes onto", "fakes from"])


def sample_grids(dataset: Path, out_dir: Path) -> list[tuple[str, Path]]:
    """A PNG per method: up to SAMPLES faces, one a video, with the mask laid over a copy of each fake."""
    from dfpipe.pipeline.show.render import overlay, sheet_row, thumbnail, write_sheet

    videos = read_table(dataset, "videos", VIDEOS_SCHEMA, columns=["video_id", "label", "method", "compression",
                                                                     "status"]).to_pandas()
    videos = videos[videos["status"] == "ok"]
    index = read_table(dataset, "faces", FACES_SCHEMA, columns=["face_id", "video_id", "frame_index"]).to_pandas()
    pick_of = {}
    for vid, rows in index.sort_values("frame_index").groupby("video_id"):
        pick_of[vid] = rows["face_id"].iloc[len(rows) // 2]
    videos = videos.assign(group=np.where(videos["label"] == "real", "real", videos["method"].fillna("unknown")))
    out = []
    import pyarrow.compute as pc

    for group, rows in sorted(videos.groupby("group"), key=lambda kv: (kv[0] != "real", kv[0])):
        vids = [v for v in sorted(rows["video_id"]) if v in pick_of][:SAMPLES]
        if not vids:
            continue
        faces = read_table(dataset, "faces", FACES_SCHEMA, columns=["face_id", "video_id", "image", "mask"],
                           filter=pc.field("face_id").isin([pick_of[v] for v in vids])).to_pandas()
        faces = faces.set_index("video_id").loc[[v for v in vids if v in set(faces["video_id"])]]
        thumbs = [thumbnail(b, THUMB) for b in faces["image"]]
        comp = rows.set_index("video_id")["compression"].fillna("-")
        title = f"{group}: {len(rows)} videos ({', '.join(sorted(set(comp.astype(str))))})"
        sheet = [sheet_row(thumbs, SAMPLES, THUMB, title)]
        if group != "real" and faces["mask"].notna().any():
            masked = [overlay(t, m) if isinstance(m, bytes) else t for t, m in zip(thumbs, faces["mask"])]
            sheet.append(sheet_row(masked, SAMPLES, THUMB, "the same faces with their masks"))
        path = write_sheet(sheet, out_dir / f"samples-{_slug(group)}.png", SAMPLES * THUMB)
        out.append((group, path))
    return out


def quality_section(dataset: Path, out_dir: Path) -> tuple[pd.DataFrame | None, list[tuple[str, Path]]]:
    """The quality table (a row per metric, a column per method) and its plots, when scored."""
    if not (dataset / "quality").is_dir():
        return None, []
    from dfpipe.pipeline.quality.report import by_metric, make_plots, summary_table
    from dfpipe.pipeline.quality.score import read_quality

    frames, videos = read_quality(dataset)
    table = summary_table(videos)
    plots = make_plots(frames, out_dir)
    # one picture a metric on the card: its box plot by method and compression (the full
    # set, histograms too, is in dataset/quality/report.html)
    chosen = [(t, p) for t, p in plots if t.endswith("box plot by method and compression")]
    for t, p in plots:
        if (t, p) not in chosen:
            p.unlink(missing_ok=True)
    return (by_metric(table) if not table.empty else None), chosen


METRIC_COLUMNS = [("frame", "auc", "frame AUC"), ("video", "auc", "video AUC"), ("frame", "acc", "ACC"),
                  ("frame", "eer", "EER"), ("frame", "ap", "AP")]


def detector_tables(lay: Layout, recipe: Recipe, out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame,
                                                                         list[tuple[str, Path]]]:
    """Overall results, per method / compression rows, the cross-dataset AUC table, ROC PNGs."""
    overall, detail, cross, rocs = [], [], [], []
    targets = [*recipe.evaluate.splits, *[f"external-{s.name}" for s in recipe.evaluate.external]]
    for det in recipe.detectors:
        cross_row: dict[str, Any] = {"detector": det.name}
        for target in targets:
            folder = lay.evaluation(det.name) / target
            path = folder / "metrics.json"
            if not path.is_file():
                cross_row[target] = None
                continue
            m = json.loads(path.read_text())
            row = {"detector": det.name, "on": target, "faces": m.get("n_faces"), "videos": m.get("n_videos")}
            row.update({label: m.get(part, {}).get(key) for part, key, label in METRIC_COLUMNS})
            overall.append(row)
            cross_row[target] = m.get("video", {}).get("auc") if m.get("video", {}).get("auc") is not None else None
            cross_row[f"{target} (frame)"] = m.get("frame", {}).get("auc")
            for kind, key in (("method", "per_method"), ("compression", "per_compression")):
                for value, sub in (m.get(key) or {}).items():
                    detail.append({"detector": det.name, "on": target, "by": kind, "value": value,
                                   "frame AUC": sub.get("auc"), "video AUC": sub.get("video_auc"),
                                   "ACC": sub.get("acc"), "EER": sub.get("eer"), "AP": sub.get("ap"), "faces": sub.get("n")})
            if (folder / "roc.png").is_file():
                dest = out_dir / f"roc-{_slug(det.name)}-{_slug(target)}.png"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / "roc.png", dest)
                rocs.append((f"{det.name} on {target}", dest))
        cross.append(cross_row)
    return pd.DataFrame(overall), pd.DataFrame(detail), pd.DataFrame(cross), rocs


def timing_table(state: dict[str, Any], order: list[str] | None = None) -> pd.DataFrame:
    """Seconds per step (in build order) and their share, with core-hours at this
    machine's core count."""
    cores = os.cpu_count() or 1
    steps = state.get("steps", {})
    names = [n for n in (order or []) if n in steps] + [n for n in steps if n not in (order or [])]
    rows = [{"step": name, "seconds": steps[name].get("seconds"), "items": str(_items(steps[name].get("figures", {})) or "-")}
            for name in names if steps[name].get("status") == "done"]
    table = pd.DataFrame(rows, columns=["step", "seconds", "items"])
    total = table["seconds"].sum() if len(table) else 0
    table["share"] = (table["seconds"] / total).map(lambda v: f"{100 * v:.0f}%") if total else "-"
    table["core-hours"] = (table["seconds"] * cores / 3600).round(3)
    table["seconds"] = table["seconds"].map(lambda v: f"{v:.1f}")
    return table


def _items(figures: dict[str, Any]) -> Any:
    for key in ("items", "added", "written"):
        if key in figures:
            return figures[key]
    return None


def write_card(recipe: Recipe, lay: Layout, state: dict[str, Any]) -> tuple[Path, Path]:
    """Write `card/index.html` and `card/card.md` from the build's outputs."""
    from dfpipe.build.features import plot_tsne
    from dfpipe.build.steps import checkpoint_of

    out = lay.card
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    from dfpipe.build.plan import plan_steps, training_set

    shown = training_set(recipe, lay)  # what the detectors see; quality is of dataset/ (the fakes' sources)
    counts = counts_tables(shown)
    leaks = identity_leaks(shown)
    grids = sample_grids(shown, out / "samples")
    quality, plots = quality_section(lay.dataset, out / "quality")
    overall, detail, cross, rocs = detector_tables(lay, recipe, out / "roc")
    ckpts = [checkpoint_of(lay, d.name) for d in recipe.detectors]
    tsne, tsne_note = plot_tsne(shown, [c for c in ckpts if c.is_file()], out / "tsne.png")
    timing = timing_table(state, [s.name for s in plan_steps(recipe, lay.out)])
    recipe_text = recipe.path.read_text()
    card = {
        "title": recipe.card.get("title", recipe.name), "counts": counts, "leaks": leaks, "grids": grids,
        "quality": quality, "plots": plots, "overall": overall, "detail": detail, "cross": cross, "rocs": rocs,
        "tsne": tsne, "tsne_note": tsne_note, "timing": timing, "recipe": recipe_text, "state": state,
    }
    html_path = out / "index.html"
    html_path.write_text(_html(recipe, card, out), encoding="utf-8")
    md_path = out / "card.md"
    md_path.write_text(_markdown(recipe, card, out), encoding="utf-8")
    return html_path, md_path


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text))


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if isinstance(v, (float, np.floating)):
        if float(v).is_integer() and abs(v) >= 2:  # a count in a float column
            return f"{int(v)}"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _table_html(frame: pd.DataFrame | None, empty: str = "none") -> str:
    if frame is None or frame.empty:
        return f"<p><em>{html.escape(empty)}</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _table_md(frame: pd.DataFrame | None, empty: str = "none") -> str:
    if frame is None or frame.empty:
        return f"_{empty}_"
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(_fmt(v).replace("|", "/") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _img(path: Path, base: Path, alt: str) -> str:
    return f'<figure><img src="{html.escape(path.relative_to(base).as_posix())}" alt="{html.escape(alt)}">' \
           f"<figcaption>{html.escape(alt)}</figcaption></figure>"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}figure{display:inline-block;margin:6px}
img{max-width:100%;border:1px solid #ddd}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:13px}
.ok{color:#176117}.bad{color:#a11}.plots figure{width:340px;vertical-align:top}.plots img{width:100%}
figcaption{font-size:13px;color:#444}"""


def _html(recipe: Recipe, c: dict[str, Any], base: Path) -> str:
    esc = html.escape
    meta = recipe.card
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(c['title'])}</title>",
             f"<style>{_STYLE}</style></head><body>", f"<h1>{esc(c['title'])}</h1>"]
    if meta.get("description"):
        parts.append(f"<p>{esc(meta['description'])}</p>")
    info = [(k, meta[k]) for k in ("authors", "license") if meta.get(k)]
    parts += [f"<p><b>{esc(k)}:</b> {esc(v)}</p>" for k, v in info]
    parts.append(f"<p>Built with dfpipe {esc(c['state'].get('versions', {}).get('dfpipe', '?'))} from the recipe "
                 f"<code>{esc(recipe.name)}</code> (below).</p>")
    parts.append("<h2>Counts</h2>")
    for name, frame in c["counts"].items():
        if name == "errors" and frame.empty:
            continue
        if name == "per identity":
            parts += [f"<details><summary>per identity ({len(frame)} people)</summary>", _table_html(frame),
                      "</details>"]
            continue
        parts += [f"<h3>{esc(name)}</h3>", _table_html(frame)]
    leak = ("<p class='ok'>Identity check: no person and no fake's source or target crosses splits.</p>"
            if not c["leaks"] else f"<p class='bad'>Identity leaks: {esc('; '.join(c['leaks'][:10]))}</p>")
    parts.append(leak)
    parts.append("<h2>Samples</h2>")
    parts += [_img(p, base, f"{g}") for g, p in c["grids"]] or ["<p><em>no faces</em></p>"]
    parts.append("<h2>Quality</h2>")
    parts.append("<p>Means over videos (see <code>dfpipe score-quality --help</code> for each metric).</p>")
    parts.append(_table_html(c["quality"], "not scored"))
    parts += ["<div class='plots'>", *[_img(p, base, t) for t, p in c["plots"]], "</div>"]
    parts.append("<h2>Detectors</h2>")
    parts.append(_table_html(c["overall"], "no detector evaluated"))
    parts.append("<h3>By method and compression</h3>")
    parts.append("<p>Per method: that method's fakes against all reals of the split; per compression: all faces "
                 "of that level.</p>")
    parts.append(_table_html(c["detail"], "none"))
    parts.append("<h3>Cross-dataset (video AUC)</h3>")
    parts.append(_table_html(c["cross"], "no external test set"))
    parts += ["<div class='plots'>", *[_img(p, base, t) for t, p in c["rocs"]], "</div>"]
    parts.append("<h2>Feature spread</h2>")
    parts.append(_img(c["tsne"], base, c["tsne_note"]) if c["tsne"] else f"<p><em>{esc(c['tsne_note'])}</em></p>")
    parts.append("<h2>Time per step</h2>")
    parts.append(_table_html(c["timing"]))
    parts.append("<h2>Recipe</h2>")
    parts.append(f"<pre>{esc(c['recipe'])}</pre>")
    parts.append("<h2>Provenance</h2>")
    parts.append(_table_html(pd.DataFrame(sorted(c["state"].get("versions", {}).items()), columns=["package", "version"])))
    weights = c["state"].get("weights", {})
    parts.append(_table_html(pd.DataFrame([(k, str(v)) for k, v in sorted(weights.items())], columns=["weights", "sha256"]),
                             "no weights recorded"))
    if meta.get("citation"):
        parts.append(f"<h2>Citation</h2><pre>{esc(meta['citation'])}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(recipe: Recipe, c: dict[str, Any], base: Path) -> str:
    meta = recipe.card
    md = [f"# {c['title']}", ""]
    if meta.get("description"):
        md += [meta["description"], ""]
    md += [f"**{k}:** {meta[k]}  " for k in ("authors", "license") if meta.get(k)]
    md += ["", "## Counts", ""]
    for name, frame in c["counts"].items():
        if name == "errors" and frame.empty:
            continue
        md += [f"### {name}", "", _table_md(frame), ""]
    md += ["Identity check: " + ("no person and no fake's source or target crosses splits." if not c["leaks"]
                                 else "; ".join(c["leaks"][:10])), ""]
    md += ["## Samples", ""] + [f"![{g}]({p.relative_to(base).as_posix()})" for g, p in c["grids"]] + [""]
    md += ["## Quality", "", _table_md(c["quality"], "not scored"), ""]
    md += [f"![{t}]({p.relative_to(base).as_posix()})" for t, p in c["plots"]] + [""]
    md += ["## Detectors", "", _table_md(c["overall"], "no detector evaluated"), "", "### By method and compression",
           "", _table_md(c["detail"]), "", "### Cross-dataset (video AUC)", "", _table_md(c["cross"], "no external test set"), ""]
    md += [f"![{t}]({p.relative_to(base).as_posix()})" for t, p in c["rocs"]] + [""]
    md += ["## Feature spread", "", (f"![{c['tsne_note']}](tsne.png)" if c["tsne"] else f"_{c['tsne_note']}_"), ""]
    md += ["## Time per step", "", _table_md(c["timing"]), "", "## Recipe", "", "```yaml", c["recipe"].rstrip(), "```", ""]
    if meta.get("citation"):
        md += ["## Citation", "", "```", meta["citation"].rstrip(), "```", ""]
    return "\n".join(md)


__all__ = ["counts_tables", "detector_tables", "sample_grids", "timing_table", "write_card"]
