"""The seven DeeperForensics-1.0 perturbations at their five levels, on one RGB image.

DeeperForensics-1.0 (Jiang et al., CVPR 2020) tests detectors on fakes degraded the way
real-world videos are. Its public code (github EndlessSora/DeeperForensics-1.0,
`perturbation/add_distortion_to_video.py` for the level tables, `perturbation/distortions.py`
for the operations) defines seven kinds at five levels; level 1 is the mildest. This module
re-implements what that code does (not what the names suggest, where the two differ):

- `CS` colour saturation change: in YCbCr, the chroma deviation from neutral is multiplied by
  the parameter, luma kept. Levels 0.4, 0.3, 0.2, 0.1, 0.0 (0.0 is fully grey).
- `CC` colour contrast change: every pixel value is multiplied by the parameter, i.e. scaled
  towards *black*, not around the mean, so brightness drops with contrast. Levels 0.85,
  0.725, 0.6, 0.475, 0.35.
- `BW` local block-wise: the parameter is a number of 8x8 blocks set to grey 128 at uniform
  random positions (they may overlap), times `min(H, W) // 256` (so 4x on 1080p frames).
  Levels 16, 32, 48, 64, 80.
- `GNC` white Gaussian noise in colour components: the parameter is the *variance* of
  zero-mean Gaussian noise added to each of Y, Cb and Cr in studio-swing units (Y spans
  219/255 of [0, 1], chroma 224/255), so the noise std is sqrt(p) * 255/219 on full-range
  luma and sqrt(p) * 255/224 on full-range chroma (values in [0, 1]). Levels 0.001, 0.002,
  0.005, 0.01, 0.05.
- `GB` Gaussian blur: kernel size k x k with sigma k / 6. Levels 7, 9, 13, 17, 21.
- `JPEG` "JPEG compression": despite the name, their code does no JPEG coding; it shrinks
  the image by the integer factor (`cv2.resize`, bilinear) and enlarges it back. The
  parameter is that factor. Levels 2, 3, 4, 5, 6. We follow the code.
- `VC` video compression: re-encoding the whole video with ffmpeg at x264 CRF 30, 32, 35, 38,
  40 (their command is `ffmpeg -i IN -crf N OUT.mp4`, libx264 defaults otherwise). It needs a
  video, so `apply` refuses it; `VIDEO_CRF` gives the table for the video path.

Mixed perturbations are several distinct kinds applied in sequence (the dataset has mixes
of 2, 3 and 4); `random_mix` draws one.

Deviations from their code, all small: results are truncated to uint8 like their
`astype(np.uint8)`, but after clipping and with a 1e-3 allowance for float round-off; `BW`
uses a block multiplier of at least 1, so crops under 256 px still get the level's blocks
(their rule gives none); `JPEG` never shrinks a side below 1 px; randomness comes from the
`numpy.random.Generator` passed in (theirs from the global `random` / `np.random` state).
Their frame perturbations were written to XVID then converted by ffmpeg to build the
dataset (`--via_xvid`); that container step belongs to the video path, not to these ops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

KINDS: tuple[str, ...] = ("CS", "CC", "BW", "GNC", "GB", "JPEG", "VC")
IMAGE_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k != "VC")
NAMES: dict[str, str] = {
    "CS": "colour saturation change",
    "CC": "colour contrast change",
    "BW": "local block-wise",
    "GNC": "white Gaussian noise in colour components",
    "GB": "Gaussian blur",
    "JPEG": "JPEG compression (down/up-scaling)",
    "VC": "video compression",
}
LEVELS: dict[str, tuple] = {
    "CS": (0.4, 0.3, 0.2, 0.1, 0.0),
    "CC": (0.85, 0.725, 0.6, 0.475, 0.35),
    "BW": (16, 32, 48, 64, 80),
    "GNC": (0.001, 0.002, 0.005, 0.01, 0.05),
    "GB": (7, 9, 13, 17, 21),
    "JPEG": (2, 3, 4, 5, 6),
    "VC": (30, 32, 35, 38, 40),
}
N_LEVELS = 5
VIDEO_CRF: dict[int, int] = {i + 1: crf for i, crf in enumerate(LEVELS["VC"])}

BLOCK = 8  # BW block side in pixels
BLOCK_GREY = 128
#: studio-swing ranges over full range: GNC's noise is defined on the studio-swing signal
GNC_LUMA_SCALE = 255.0 / 219.0
GNC_CHROMA_SCALE = 255.0 / 224.0
_ROUND_OFF = 1e-3  # so float error never truncates an exact integer one level down


def _kind(kind: str) -> str:
    """The canonical (upper-case) kind, or a ValueError naming the valid ones."""
    k = str(kind).strip().upper()
    if k not in KINDS:
        raise ValueError(f"unknown perturbation kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return k


def _level(level: int) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 1 <= level <= N_LEVELS:
        raise ValueError(f"perturbation level must be an integer 1-{N_LEVELS}, got {level!r}")
    return int(level)


def parameter(kind: str, level: int):
    """The documented parameter of `kind` at `level` (1 = mildest, 5 = strongest)."""
    return LEVELS[_kind(kind)][_level(level) - 1]


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Clip and truncate, as DeeperForensics' `astype(np.uint8)` truncates."""
    return np.floor(np.clip(values + _ROUND_OFF, 0.0, 255.0)).astype(np.uint8)


def _ycrcb(image: np.ndarray) -> np.ndarray:
    """Full-range YCrCb in [0, 1] (chroma neutral at 0.5), float32."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2YCrCb)


def _rgb255(ycrcb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(ycrcb.astype(np.float32), cv2.COLOR_YCrCb2RGB) * 255.0


def colour_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """Scale chroma towards neutral grey; luma is untouched."""
    ycc = _ycrcb(image)
    ycc[..., 1:] = 0.5 + (ycc[..., 1:] - 0.5) * factor
    return _to_uint8(_rgb255(ycc))


def colour_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Multiply every value by `factor` (towards black, as their code does)."""
    return _to_uint8(image.astype(np.float32) * factor)


def block_wise(image: np.ndarray, blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Grey 8x8 blocks at random positions, `blocks` per 256 px of the shorter side."""
    h, w = image.shape[:2]
    if h <= BLOCK or w <= BLOCK:
        raise ValueError(f"BW needs an image larger than {BLOCK}x{BLOCK}, got {w}x{h}")
    n = max(1, min(h, w) // 256) * int(blocks)
    xs = rng.integers(0, w - BLOCK, size=n)  # top-left corners, as their randint(0, w-1-8)
    ys = rng.integers(0, h - BLOCK, size=n)
    out = image.copy()
    for x, y in zip(xs, ys):
        out[y:y + BLOCK, x:x + BLOCK] = BLOCK_GREY
    return out


def gaussian_noise_colour(image: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise of `variance` (studio-swing units) to Y, Cb and Cr."""
    ycc = _ycrcb(image).astype(np.float64)
    scale = np.sqrt(variance) * np.array([GNC_LUMA_SCALE, GNC_CHROMA_SCALE, GNC_CHROMA_SCALE])
    ycc += rng.standard_normal(ycc.shape) * scale
    return _to_uint8(_rgb255(ycc))


def gaussian_blur(image: np.ndarray, ksize: int) -> np.ndarray:
    """Blur with a ksize x ksize Gaussian of sigma ksize / 6 (the kernel spans +-3 sigma)."""
    return cv2.GaussianBlur(image, (ksize, ksize), ksize / 6.0)


def resample(image: np.ndarray, factor: int) -> np.ndarray:
    """Their `JPEG`: shrink by `factor` and enlarge back, both bilinear, losing detail."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


_OPS: dict[str, Callable[[np.ndarray, object, np.random.Generator], np.ndarray]] = {
    "CS": lambda im, p, rng: colour_saturation(im, p),
    "CC": lambda im, p, rng: colour_contrast(im, p),
    "BW": block_wise,
    "GNC": gaussian_noise_colour,
    "GB": lambda im, p, rng: gaussian_blur(im, p),
    "JPEG": lambda im, p, rng: resample(im, p),
}


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    return image


def apply(image: np.ndarray, kind: str, level: int, rng: np.random.Generator) -> np.ndarray:
    """image: HxWx3 uint8 RGB; returns uint8 RGB of the same shape. Deterministic for a given
    rng state (only BW and GNC draw from it). `VC` raises: it re-encodes whole videos."""
    k = _kind(kind)
    if k == "VC":
        raise ValueError("VC (video compression) applies to videos, not single images: "
                         "re-encode the video with x264 at CRF VIDEO_CRF[level] (use video mode)")
    return _OPS[k](_check_image(image), parameter(k, level), rng)


def apply_mixed(image: np.ndarray, kinds: Sequence[tuple[str, int]], rng: np.random.Generator) -> np.ndarray:
    """Apply several (kind, level) perturbations in the given order (order matters)."""
    out = _check_image(image)
    for kind, level in kinds:
        out = apply(out, kind, level, rng)
    return out


def random_mix(rng: np.random.Generator, n: int = 3, kinds: Sequence[str] = IMAGE_KINDS) -> list[tuple[str, int]]:
    """DeeperForensics' "mixed": `n` distinct kinds in random order, each at a random level
    (the dataset uses n = 2, 3 and 4, VC included for videos)."""
    pool = list(dict.fromkeys(_kind(k) for k in kinds))
    if not 1 <= n <= len(pool):
        raise ValueError(f"a mix needs 1-{len(pool)} distinct kinds from {pool}, got n={n}")
    chosen = rng.choice(len(pool), size=n, replace=False)
    levels = rng.integers(1, N_LEVELS + 1, size=n)
    return [(pool[int(i)], int(lv)) for i, lv in zip(chosen, levels)]


def _parse_pair(text: str) -> tuple[str, int]:
    kind, sep, level = text.partition(":")
    if not sep:
        raise ValueError(f"perturbation {text!r} in a mix needs a level, e.g. {text.strip().upper()}:3")
    try:
        lv = int(level.strip())
    except ValueError:
        raise ValueError(f"perturbation level must be an integer 1-{N_LEVELS}, got {level.strip()!r}") from None
    return _kind(kind), _level(lv)


def _parse_item(item: str) -> list[list[tuple[str, int]]]:
    """One comma-separated item: `all`, `KIND`, `KIND:L` or `KIND:L+KIND:L...`."""
    if item.lower() == "all":
        return [[(k, lv)] for k in KINDS for lv in range(1, N_LEVELS + 1)]
    if "+" not in item and ":" not in item:
        k = _kind(item)
        return [[(k, lv)] for lv in range(1, N_LEVELS + 1)]
    mix = [_parse_pair(part) for part in item.split("+")]
    kinds = [k for k, _ in mix]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"a mix applies each kind at most once, got {item!r}")
    return [mix]


def parse_spec(text: str) -> list[list[tuple[str, int]]]:
    """Parse a CLI perturbation spec into the perturbations to produce, each a list of
    (kind, level) applied in order.

    Comma-separated items, kinds case-insensitive: `KIND` = that kind at every level 1-5
    (five perturbations), `KIND:L` = one level, `A:L+B:M` = one mix applied together, `all`
    = every kind at every level. E.g. "GB:3" -> [[("GB", 3)]], "GB:3+JPEG:2" ->
    [[("GB", 3), ("JPEG", 2)]]. Repeats are dropped, first occurrence kept.
    """
    items = [part.strip() for part in str(text).split(",")]
    if not any(items) or not all(items):
        raise ValueError(f"empty perturbation in spec {text!r}; use KIND, KIND:L, KIND:L+KIND:L or all "
                         f"with kinds {', '.join(KINDS)}")
    specs: list[list[tuple[str, int]]] = []
    for item in items:
        for mix in _parse_item(item):
            if mix not in specs:
                specs.append(mix)
    return specs


def spec_name(mix: Sequence[tuple[str, int]]) -> str:
    """A path- and id-safe name: [("GB", 3)] -> "GB-3", [("GB", 3), ("JPEG", 2)] -> "GB-3+JPEG-2"."""
    if not mix:
        raise ValueError("an empty perturbation has no name")
    return "+".join(f"{_kind(k)}-{_level(lv)}" for k, lv in mix)
