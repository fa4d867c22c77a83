"""The quality summary: a per-dataset / per-method table, and an HTML or Markdown report
with PNG plots (histograms and box plots per method and compression, matplotlib Agg) and,
in HTML, a few sample triplets per method (donor, real target, fake crops side by side)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from dfpipe.manifests.schema import METRIC_COLUMNS

GROUP = ["dataset", "method", "compression", "label"]
#: Per-video columns of the summary: the per-frame metrics' means, and the per-video ones.
VIDEO_METRICS = (*METRIC_COLUMNS, "id_retrieval")
#: Higher is better for these; lower for the rest (id_to_target: low for a reenactment,
#: high for a swap, which should no longer look like the target).
HIGHER_BETTER = {"mask_ssim", "mask_ssim_inside", "ssim", "id_retrieval"}
LABELS = {
    "mask_ssim": "Mask-SSIM (masked images)",
    "mask_ssim_inside": "Mask-SSIM (mean inside mask)",
    "ssim": "SSIM (whole crop)",
    "lpips": "LPIPS (VGG)",
    "vgg_mse": "VGG relu2_2 MSE",
    "ewarp": "Ewarp",
    "id_to_source": "identity distance to the donor",
    "id_to_target": "identity distance to the target",
    "id_retrieval": "identity retrieval",
    "pose_error": "pose error (degrees)",
    "expression_error": "expression error (mesh / eye distance)",
    "seam": "seam (boundary gradient, fake / real)",
}
#: Narrow headers for the terminal table (one screen wide).
SHORT = {
    "compression": "comp.", "videos": "n", "mask_ssim": "M-SSIM", "mask_ssim_inside": "M-SSIM in",
    "ssim": "SSIM", "lpips": "LPIPS", "vgg_mse": "VGG MSE", "ewarp": "Ewarp",
    "id_to_source": "ID src", "id_to_target": "ID tgt", "id_retrieval": "ID ret", "pose_error": "pose",
    "expression_error": "expr", "seam": "seam",
}
#: Sample triplets per method in the HTML report, and the side of each crop there.
SAMPLES_PER_METHOD = 3
SAMPLE_SIZE = 160


def summary_table(videos: pd.DataFrame) -> pd.DataFrame:
    """Mean of each per-video metric by dataset, method, compression and label."""
    ok = videos[videos["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame(columns=[*GROUP, "videos", *VIDEO_METRICS])
    for col in GROUP:
        ok[col] = ok[col].fillna("-")
    metrics = [c for c in VIDEO_METRICS if c in ok and ok[c].notna().any()]
    table = ok.groupby(GROUP, dropna=False).agg(videos=("video_id", "count"), **{c: (c, "mean") for c in metrics})
    return table.reset_index()


def by_metric(table: pd.DataFrame) -> pd.DataFrame:
    """`summary_table` turned: a row per metric, a column per dataset / method /
    compression / label, so a dozen metrics fit a page (as the terminal table shows them)."""
    if table.empty:
        return table
    turned = table.set_index(_group_label(table, GROUP)).drop(columns=GROUP).T
    turned.insert(0, "metric", [LABELS.get(c, c) for c in turned.index])
    return turned.reset_index(drop=True)


def fmt(value) -> str:
    """A metric as tables show it (3 significant digits, `-` for none)."""
    if isinstance(value, (float, np.floating)):
        return "-" if np.isnan(value) else f"{value:.3g}"
    return str(value)


def markdown_table(table: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs the optional `tabulate`)."""
    head = "| " + " | ".join(LABELS.get(c, c) for c in table.columns) + " |"
    rule = "|" + "---|" * len(table.columns)
    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _group_label(frame: pd.DataFrame, by: list[str]) -> pd.Series:
    return frame[by].fillna("-").astype(str).agg(" / ".join, axis=1)


def make_plots(frames: pd.DataFrame, out_dir: Path) -> list[tuple[str, Path]]:
    """Histogram and box plots per metric, by method (and by compression); PNG paths."""
    if frames.empty:  # every video failed: nothing to plot (and no columns to group by)
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    plots = []
    frames = frames.copy()
    frames["group"] = _group_label(frames, ["dataset", "method", "label"])
    frames["comp"] = _group_label(frames, ["method", "compression"])
    for metric in METRIC_COLUMNS:
        data = frames[frames[metric].notna()]
        if data.empty:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, sub in data.groupby("group"):
            ax.hist(sub[metric], bins=30, alpha=0.6, label=f"{name} (n={len(sub)})")
        ax.set_xlabel(LABELS[metric] + (" (higher = closer)" if metric in HIGHER_BETTER else " (lower = closer)"))
        ax.set_ylabel("frames")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"hist_{metric}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        plots.append((f"{LABELS[metric]}: histogram by method", path))
        for by, title in (("group", "method"), ("comp", "method and compression")):
            groups = sorted(data[by].unique())
            fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(groups)), 4))
            ax.boxplot([data.loc[data[by] == g, metric].to_numpy() for g in groups])
            ax.set_xticks(range(1, len(groups) + 1), groups, rotation=20, ha="right", fontsize=7)
            ax.set_ylabel(LABELS[metric])
            fig.tight_layout()
            path = out_dir / f"box_{metric}_{'method' if by == 'group' else 'compression'}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            plots.append((f"{LABELS[metric]}: box plot by {title}", path))
    return plots


def _panel(image: np.ndarray | None, title: str) -> np.ndarray:
    """One crop at SAMPLE_SIZE with its title on a bar above (grey when there is none)."""
    import cv2

    size = SAMPLE_SIZE
    if image is None:
        body = np.full((size, size, 3), 90, np.uint8)
    else:
        body = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    bar = np.full((22, size, 3), 255, np.uint8)
    cv2.putText(bar, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, body], axis=0)


def _png_uri(rgb: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _nearest_row(rows: dict[int, dict], index: int) -> dict | None:
    return rows[min(rows, key=lambda i: abs(i - index))] if rows else None


def _caption(frame: pd.Series | None) -> str:
    if frame is None:
        return ""
    shown = [(SHORT[c], frame[c]) for c in ("id_to_source", "id_to_target", "pose_error", "expression_error", "seam")
             if c in frame and pd.notna(frame[c])]
    return ", ".join(f"{name} {fmt(float(v))}" for name, v in shown)


def sample_triplets(
    root: str | Path, frames: pd.DataFrame, per_method: int = SAMPLES_PER_METHOD
) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(method, [(caption, PNG data URI)])]: a few frames of the first scored fake of each
    method, as donor | target (real) | fake crops, to see what the numbers are about."""
    from dfpipe.manifests.codec import decode_image
    from dfpipe.manifests.parts import read_table
    from dfpipe.manifests.schema import VIDEOS_SCHEMA
    from dfpipe.pipeline.quality.identity import main_track
    from dfpipe.pipeline.quality.score import _read_faces

    root = Path(root)
    videos = {v["video_id"]: v for v in read_table(root, "videos", VIDEOS_SCHEMA).to_pylist()}
    scored = frames[(frames["label"] == "fake") & frames["face_id"].notna()] if not frames.empty else frames
    out = []
    for method, group in scored.groupby(scored["method"].fillna("-")) if not scored.empty else []:
        vid = sorted(group["video_id"].unique())[0]
        video = videos.get(vid, {})
        fakes = sorted(_read_faces(root, vid), key=lambda r: (r["frame_index"], r["track_id"]))
        real = {(r["frame_index"], r["track_id"]): r for r in _read_faces(root, video.get("source_video_id") or "")}
        donor = {r["frame_index"]: r for r in main_track(_read_faces(root, video.get("target_video_id") or ""))}
        by_face = {r.face_id: r for r in group[group["video_id"] == vid].itertuples(index=False)}
        pick = np.unique(np.linspace(0, len(fakes) - 1, min(per_method, len(fakes))).round().astype(int)) if fakes else []
        samples = []
        for i in pick:
            fake = fakes[i]
            partner, giver = real.get((fake["frame_index"], fake["track_id"])), _nearest_row(donor, fake["frame_index"])
            crops = [decode_image(r["image"]) if r is not None and r.get("image") is not None else None
                     for r in (giver, partner, fake)]
            titles = ("donor" if giver is not None else "no donor in dataset", "target (real)", "fake")
            strip = np.concatenate([_panel(c, t) for c, t in zip(crops, titles)], axis=1)
            row = by_face.get(fake["face_id"])
            caption = f"frame {fake['frame_index']}: " + _caption(pd.Series(row._asdict()) if row is not None else None)
            samples.append((caption, _png_uri(strip)))
        out.append((str(method), samples))
    return out


def check_report_path(report: str | Path) -> None:
    """Raise ValueError for a report name that is neither HTML nor Markdown (before a run)."""
    if Path(report).suffix.lower() not in (".html", ".htm", ".md"):
        raise ValueError(f"--report must end in .html or .md, got {Path(report).name!r}")


def write_report(root: str | Path, report: str | Path) -> Path:
    """An HTML (`.html`) or Markdown (`.md`) report beside its PNG folder."""
    from dfpipe.pipeline.quality.score import read_quality

    report = Path(report)
    check_report_path(report)
    frames, videos = read_quality(root)
    table = summary_table(videos)
    plots = make_plots(frames, report.parent / (report.stem + "_plots"))
    rel = [(title, p.relative_to(report.parent).as_posix()) for title, p in plots]
    errors = videos[videos["status"] != "ok"]
    report.parent.mkdir(parents=True, exist_ok=True)
    if report.suffix.lower() == ".md":
        parts = [f"# Quality of {Path(root).name}", "", markdown_table(by_metric(table)) if not table.empty else "_no scored videos_"]
        if not errors.empty:
            parts += ["", "## Videos that could not be scored", "", markdown_table(errors[["video_id", "error_code", "error"]])]
        parts += [""] + [f"## {t}\n\n![{t}]({p})\n" for t, p in rel]
        report.write_text("\n".join(parts), encoding="utf-8")
        return report
    lower = [name for name, col in (("LPIPS", "lpips"), ("VGG MSE", "vgg_mse"), ("Ewarp", "ewarp"))
             if col in table and table[col].notna().any()]  # name only what was computed
    lower_text = f"; {', '.join(lower)}: lower = closer / smoother" if lower else ""
    body = [f"<h1>Quality of {html.escape(Path(root).name)}</h1>", "<p>Means over videos. Mask-SSIM and SSIM: higher = "
            f"closer to the source{lower_text}. Identity: dlib descriptor "
            "distance (&lt; 0.6 = same person) to the donor (id_to_source) and to the real target face "
            "(id_to_target); id_retrieval: fraction of frames whose nearest real identity is the expected one "
            "(the donor for a swap, the target for a reenactment). pose_error: degrees against the target; "
            "expression_error: mesh distance after pose removal over the eye distance; seam: gradient on the "
            "mask boundary over the real frame's (1 = invisible).</p>",
            by_metric(table).to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")]
    if not errors.empty:
        body += ["<h2>Videos that could not be scored</h2>", errors[["video_id", "error_code", "error"]].to_html(index=False)]
    for method, samples in sample_triplets(root, frames):
        body.append(f"<h2>Samples: {html.escape(method)}</h2><div class='samples'>")
        body += [f"<figure><img src='{uri}' alt='sample of {html.escape(method)}'><figcaption>{html.escape(c)}"
                 "</figcaption></figure>" for c, uri in samples]
        body.append("</div>")
    body += [f'<h2>{html.escape(t)}</h2><img src="{html.escape(p)}" alt="{html.escape(t)}">' for t, p in rel]
    report.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>dfpipe quality</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}.samples{display:flex;flex-wrap:wrap;gap:8px}"
        "figure{margin:0;font-size:12px}</style></head><body>" + "\n".join(body) + "</body></html>",
        encoding="utf-8",
    )
    return report
