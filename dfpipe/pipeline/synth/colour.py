"""Colour transfer: make a pasted face's colours match the face it replaces.

Naive stitching leaves a colour seam that detectors learn instead of the manipulation
(SR-DF's point). Each mode moves the statistics of `fg` inside `mask` onto those of `bg`
inside `mask`:

- `none`: identity (naive stitching).
- `rct`: Reinhard et al. 2001, per-channel mean/std matching in OpenCV CIELAB.
- `lct`: linear covariance matching in RGB, through the symmetric (PCA) or Cholesky square
  root of the covariances.
- `mkl`: the Monge-Kantorovich linear map T = Sa^-1/2 (Sa^1/2 Sb Sa^1/2)^1/2 Sa^-1/2
  (Pitie & Kokaram 2007), the optimal-transport map between two Gaussians.
- `idt`: iterative distribution transfer (Pitie et al. 2005): random 3-D rotations, 1-D
  histogram matching along each axis, repeated; seeded, so reproducible.

`ColourTransfer.fit` computes the parameters once (e.g. on the first frame of a track) and
`apply` reuses them on every frame, so a fake video does not flicker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

MODES = ("none", "rct", "lct", "mkl", "idt")
LCT_METHODS = ("pca", "chol")
_EPS = 1e-5  # ridge on covariances: a flat-coloured face must not make them singular
_MAX_FIT_PIXELS = 50_000


def _selected(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """N x 3 float64 pixels (RGB in [0, 1]) where the mask is on (> half)."""
    px = np.asarray(image, dtype=np.float64).reshape(-1, 3) / 255.0
    if mask is None:
        return px
    m = np.asarray(mask)
    on = (m > 127) if m.dtype == np.uint8 else (m > 0.5)
    sel = px[on.reshape(-1)]
    if len(sel) < 16:
        raise ValueError(f"colour transfer needs at least 16 pixels inside the mask, got {len(sel)}")
    return sel


def _subsample(px: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(px) <= _MAX_FIT_PIXELS:
        return px
    return px[rng.choice(len(px), _MAX_FIT_PIXELS, replace=False)]


def _sqrtm(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _cov(px: np.ndarray) -> np.ndarray:
    return np.cov(px, rowvar=False) + _EPS * np.eye(3)


def _to_lab(rgb01: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb01.astype(np.float32).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3)


def _from_lab(lab: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(lab.astype(np.float32).reshape(-1, 1, 3), cv2.COLOR_LAB2RGB).reshape(-1, 3)


@dataclass
class ColourTransfer:
    """Fitted colour-transfer parameters; `apply` maps any RGB uint8 image with them."""

    mode: str
    # rct: Lab mean/std of fg and bg; lct/mkl: mean_fg, mean_bg and a 3x3 matrix;
    # idt: a list of (rotation, [per-axis (x_knots, y_knots)]).
    params: dict = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        fg: np.ndarray,
        bg: np.ndarray,
        mask: np.ndarray | None,
        mode: str,
        seed: int = 0,
        lct_method: str = "pca",
        idt_iterations: int = 20,
        bg_mask: np.ndarray | None = None,
    ) -> "ColourTransfer":
        """Fit the map taking `fg`'s colours inside `mask` to `bg`'s inside `bg_mask`
        (default: the same mask; the two images then share geometry)."""
        if mode not in MODES:
            raise ValueError(f"colour mode must be one of {MODES}, got {mode!r}")
        if mode == "none":
            return cls(mode)
        rng = np.random.default_rng(seed)
        a = _subsample(_selected(fg, mask), rng)
        b = _subsample(_selected(bg, mask if bg_mask is None else bg_mask), rng)
        if mode == "rct":
            la, lb = _to_lab(a), _to_lab(b)
            return cls(mode, {"mean_a": la.mean(0), "std_a": la.std(0) + 1e-6,
                              "mean_b": lb.mean(0), "std_b": lb.std(0)})
        mean_a, mean_b = a.mean(0), b.mean(0)
        sa, sb = _cov(a), _cov(b)
        if mode == "lct":
            if lct_method == "pca":
                matrix = _sqrtm(sb) @ np.linalg.inv(_sqrtm(sa))
            elif lct_method == "chol":
                matrix = np.linalg.cholesky(sb) @ np.linalg.inv(np.linalg.cholesky(sa))
            else:
                raise ValueError(f"lct_method must be one of {LCT_METHODS}, got {lct_method!r}")
            return cls(mode, {"mean_a": mean_a, "mean_b": mean_b, "matrix": matrix})
        if mode == "mkl":
            ra = _sqrtm(sa)
            ra_inv = np.linalg.inv(ra)
            matrix = ra_inv @ _sqrtm(ra @ sb @ ra) @ ra_inv
            return cls(mode, {"mean_a": mean_a, "mean_b": mean_b, "matrix": matrix})
        return cls(mode, {"steps": _fit_idt(a, b, rng, idt_iterations)})

    def apply(self, fg: np.ndarray) -> np.ndarray:
        """`fg` (RGB uint8, any size) with the fitted map applied to every pixel."""
        if self.mode == "none":
            return np.asarray(fg, dtype=np.uint8).copy()
        shape = fg.shape
        px = np.asarray(fg, dtype=np.float64).reshape(-1, 3) / 255.0
        p = self.params
        if self.mode == "rct":
            lab = _to_lab(px)
            lab = (lab - p["mean_a"]) / p["std_a"] * p["std_b"] + p["mean_b"]
            out = _from_lab(lab)
        elif self.mode in ("lct", "mkl"):
            out = (px - p["mean_a"]) @ p["matrix"].T + p["mean_b"]
        else:
            out = _apply_idt(px, p["steps"])
        return np.clip(np.rint(np.asarray(out) * 255.0), 0, 255).astype(np.uint8).reshape(shape)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _fit_idt(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, iterations: int, knots: int = 256):
    """Each step: rotate both clouds, quantile-match each axis of `a` to `b`, rotate back.
    The 1-D maps are stored as quantile knots so `apply` replays them on other images."""
    qs = np.linspace(0.0, 1.0, knots)
    steps = []
    a = a.copy()
    for _ in range(iterations):
        rot = _random_rotation(rng)
        pa, pb = a @ rot, b @ rot
        maps = []
        for axis in range(3):
            xk = np.quantile(pa[:, axis], qs)
            yk = np.quantile(pb[:, axis], qs)
            xk = np.maximum.accumulate(xk + np.arange(knots) * 1e-9)  # strictly increasing for interp
            maps.append((xk, yk))
            pa[:, axis] = np.interp(pa[:, axis], xk, yk)
        a = pa @ rot.T
        steps.append((rot, maps))
    return steps


def _apply_idt(px: np.ndarray, steps) -> np.ndarray:
    x = px.copy()
    for rot, maps in steps:
        p = x @ rot
        for axis, (xk, yk) in enumerate(maps):
            p[:, axis] = np.interp(p[:, axis], xk, yk)
        x = p @ rot.T
    return x


def colour_transfer(
    fg: np.ndarray, bg: np.ndarray, mask: np.ndarray | None, mode: str, seed: int = 0, **kwargs
) -> np.ndarray:
    """One-shot: fit on (fg, bg, mask) and apply to fg. RGB uint8 in and out."""
    return ColourTransfer.fit(fg, bg, mask, mode, seed=seed, **kwargs).apply(fg)
