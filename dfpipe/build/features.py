"""The card's feature-spread plot (SR-DF, Figure 6): t-SNE of one feature vector a video.

A dataset whose fakes sit in their own tight cluster away from the reals is easy in a way
real deepfakes are not; a good one spreads its fakes among the reals. Each video's vector
is the mean over a few of its faces of, in order of preference: ImageNet ResNet-18's pooled
features (when its weights are in the Hugging Face cache; never downloaded), the trained detector's features (the input
of its last linear layer), or dlib's identity descriptor. The plot's title says which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from dfpipe.manifests.codec import decode_image
from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA

#: faces averaged per video (evenly spaced along its main track)
FACES_PER_VIDEO = 4
#: videos plotted at most (every k-th video id is kept beyond this)
MAX_VIDEOS = 2000


def sample_faces(dataset: str | Path, per_video: int = FACES_PER_VIDEO) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Up to `per_video` crops of each extracted video with its label, method and compression."""
    root = Path(dataset)
    videos = read_table(root, "videos", VIDEOS_SCHEMA, columns=["video_id", "label", "method", "compression",
                                                                  "status"]).to_pandas()
    videos = videos[videos["status"] == "ok"].drop_duplicates("video_id").set_index("video_id")
    index = read_table(root, "faces", FACES_SCHEMA, columns=["face_id", "video_id", "track_id", "frame_index"]).to_pandas()
    if index.empty:
        return pd.DataFrame(columns=["video_id", "label", "method", "compression"]), []
    main = index.groupby(["video_id", "track_id"]).size().reset_index(name="n").sort_values(
        ["video_id", "n", "track_id"], ascending=[True, False, True]).drop_duplicates("video_id")
    index = index.merge(main[["video_id", "track_id"]], on=["video_id", "track_id"]).sort_values(["video_id", "frame_index"])
    per_video_faces: dict[str, list[str]] = {}
    for vid, rows in index.groupby("video_id", sort=True):
        take = np.unique(np.linspace(0, len(rows) - 1, min(per_video, len(rows))).round().astype(int))
        per_video_faces[vid] = list(rows["face_id"].iloc[take])
    kept = sorted(per_video_faces)
    if len(kept) > MAX_VIDEOS:
        kept = kept[:: int(np.ceil(len(kept) / MAX_VIDEOS))]
    chosen = [f for vid in kept for f in per_video_faces[vid]]
    import pyarrow.compute as pc

    table = read_table(root, "faces", FACES_SCHEMA, columns=["face_id", "video_id", "image"],
                       filter=pc.field("face_id").isin(chosen)).to_pandas()
    images = [decode_image(b) for b in table["image"]]
    meta = table[["video_id"]].join(videos[["label", "method", "compression"]], on="video_id")
    return meta.reset_index(drop=True), images


#: timm's ImageNet ResNet-18, read from the Hugging Face cache only (never downloaded)
RESNET18_HUB = ("timm/resnet18.a1_in1k", "model.safetensors")


def resnet18_features() -> Callable[[list[np.ndarray]], np.ndarray] | None:
    """ImageNet ResNet-18's pooled features, or None when its weights are not in the local
    Hugging Face cache: the card never fetches weights."""
    try:
        import timm
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(*RESNET18_HUB)
        if not isinstance(path, str):
            return None
        model = timm.create_model("resnet18", pretrained=True, num_classes=0,
                                  pretrained_cfg_overlay={"file": path}).eval()
    except Exception:  # a damaged cache entry, an old timm: the next feature source is used
        return None
    from dfpipe.train.data import ImageSpec

    return _batched(model, ImageSpec(224, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))


def detector_features(checkpoint: str | Path) -> Callable[[list[np.ndarray]], np.ndarray] | None:
    """The trained detector's features: what enters its last linear layer."""
    import torch

    from dfpipe.models.registry import model_from_checkpoint
    from dfpipe.runtime.checkpoint import load_checkpoint
    from dfpipe.train.data import ImageSpec

    path = Path(checkpoint)
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path, map_location="cpu")
    model = model_from_checkpoint(ckpt, "cpu").eval()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        return None
    spec = ImageSpec.from_default_cfg(ckpt["default_cfg"])
    captured: list[torch.Tensor] = []
    linears[-1].register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().flatten(1)))

    def forward(batch: torch.Tensor) -> torch.Tensor:
        captured.clear()
        model(batch)
        return captured[-1]

    return _batched(forward, spec)


def identity_features() -> Callable[[list[np.ndarray]], np.ndarray] | None:
    """dlib's 128-d descriptor of the whole crop (the face fills it)."""
    try:
        from dfpipe.models.face_descriptor import FaceDescriptor

        describer = FaceDescriptor()
    except Exception:
        return None

    def run(images: list[np.ndarray]) -> np.ndarray:
        rows = []
        for im in images:
            h, w = im.shape[:2]
            box = np.array([[0.2 * w, 0.2 * h, 0.8 * w, 0.8 * h]])
            rows.append(describer.describe(im, box)[0])
        return np.stack(rows) if rows else np.zeros((0, 128), np.float32)

    return run


def _batched(forward: Callable, spec) -> Callable[[list[np.ndarray]], np.ndarray]:
    """Crops -> features: resized and normalised as `spec` says, 32 at a time, no gradients."""
    import torch

    from dfpipe.train.data import resize_to, to_tensor

    def run(images: list[np.ndarray]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(images), 32):
                batch = torch.stack([to_tensor(resize_to(im, spec.height, spec.width), spec)
                                     for im in images[start:start + 32]])
                out.append(forward(batch).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)

    return run


def video_features(dataset: str | Path, checkpoints: list[Path]) -> tuple[pd.DataFrame, np.ndarray, str]:
    """(per-video label/method/compression, per-video features, the features' name)."""
    meta, images = sample_faces(dataset)
    sources = [("ImageNet ResNet-18", resnet18_features)]
    sources += [(f"the trained detector {c.parent.name}", lambda c=c: detector_features(c)) for c in checkpoints]
    sources += [("dlib's identity descriptor", identity_features)]
    for name, make in sources:
        extractor = make()
        if extractor is None:
            continue
        feats = extractor(images)
        frame = pd.DataFrame(feats)
        frame["video_id"] = meta["video_id"].values
        mean = frame.groupby("video_id", sort=True).mean()
        videos = meta.drop_duplicates("video_id").set_index("video_id").loc[mean.index].reset_index()
        return videos, mean.to_numpy(np.float32), name
    return meta.drop_duplicates("video_id"), np.zeros((0, 0), np.float32), ""


def plot_tsne(dataset: str | Path, checkpoints: list[Path], out_png: Path) -> tuple[Path | None, str]:
    """The t-SNE plot, and a line saying what it shows (or why there is none)."""
    videos, feats, name = video_features(dataset, checkpoints)
    if not name:
        return None, "no feature extractor is available (no ResNet-18 weights, detector or dlib)"
    n = len(feats)
    if n < 4:
        return None, f"only {n} videos: too few for t-SNE"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    xy = TSNE(n_components=2, perplexity=float(min(30.0, (n - 1) / 3)), init="pca", random_state=0).fit_transform(
        (feats - feats.mean(0)) / (feats.std(0) + 1e-6))
    group = np.where(videos["label"] == "real", "real", videos["method"].fillna("fake").astype(str))
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
    for g in sorted(set(group), key=lambda s: (s != "real", s)):
        pick = group == g
        ax.scatter(xy[pick, 0], xy[pick, 1], s=28, label=f"{g} ({pick.sum()})", alpha=0.8,
                   c="0.35" if g == "real" else None, marker="o" if g == "real" else "^")
    ax.set_title(f"t-SNE of per-video features: {name}", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png, f"t-SNE of {n} videos, features from {name}"


__all__ = ["plot_tsne", "sample_faces", "video_features"]
