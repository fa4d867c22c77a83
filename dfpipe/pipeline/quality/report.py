"""The quality summary: a per-dataset / per-method table, and an HTML or Markdown report
with PNG plots (histograms and box plots per method and compression, matplotlib Agg)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from dfpipe.manifests.schema import METRIC_COLUMNS

GROUP = ["dataset", "method", "compression", "label"]
#: Higher is better for these; lower for the rest.
HIGHER_BETTER = {"mask_ssim", "mask_ssim_inside", "ssim"}
LABELS = {
    "mask_ssim": "Mask-SSIM (masked images)",
    "mask_ssim_inside": "Mask-SSIM (mean inside mask)",
    "ssim": "SSIM (whole crop)",
    "lpips": "LPIPS (VGG)",
    "vgg_mse": "VGG relu2_2 MSE",
    "ewarp": "Ewarp",
}
#: Narrow headers for the terminal table (one screen wide).
SHORT = {
    "compression": "comp.", "videos": "n", "mask_ssim": "M-SSIM", "mask_ssim_inside": "M-SSIM in",
    "ssim": "SSIM", "lpips": "LPIPS", "vgg_mse": "VGG MSE", "ewarp": "Ewarp",
}


def summary_table(videos: pd.DataFrame) -> pd.DataFrame:
    """Mean of each per-video metric by dataset, method, compression and label."""
    ok = videos[videos["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame(columns=[*GROUP, "videos", *METRIC_COLUMNS])
    for col in GROUP:
        ok[col] = ok[col].fillna("-")
    metrics = [c for c in METRIC_COLUMNS if ok[c].notna().any()]
    table = ok.groupby(GROUP, dropna=False).agg(videos=("video_id", "count"), **{c: (c, "mean") for c in metrics})
    return table.reset_index()


def fmt(value) -> str:
    """A metric as tables show it (3 significant digits, `-` for none)."""
    if isinstance(value, (float, np.floating)):
        return "-" if np.isnan(value) else f"{value:.3g}"
    return str(value)


def _markdown(table: pd.DataFrame) -> str:
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
        parts = [f"# Quality of {Path(root).name}", "", _markdown(table) if not table.empty else "_no scored videos_"]
        if not errors.empty:
            parts += ["", "## Videos that could not be scored", "", _markdown(errors[["video_id", "error_code", "error"]])]
        parts += [""] + [f"## {t}\n\n![{t}]({p})\n" for t, p in rel]
        report.write_text("\n".join(parts), encoding="utf-8")
        return report
    body = [f"<h1>Quality of {html.escape(Path(root).name)}</h1>", "<p>Means over videos. Mask-SSIM and SSIM: higher = "
            "closer to the source; LPIPS, VGG MSE, Ewarp: lower = closer / smoother.</p>",
            table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")]
    if not errors.empty:
        body += ["<h2>Videos that could not be scored</h2>", errors[["video_id", "error_code", "error"]].to_html(index=False)]
    body += [f'<h2>{html.escape(t)}</h2><img src="{html.escape(p)}" alt="{html.escape(t)}">' for t, p in rel]
    report.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>dfpipe quality</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>" + "\n".join(body) + "</body></html>",
        encoding="utf-8",
    )
    return report
