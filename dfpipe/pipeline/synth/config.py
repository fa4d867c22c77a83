"""What `dfpipe synthesize` makes: one dataclass, checked before any work starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dfpipe.pipeline.masks.facemask import REGIONS, WARPS
from dfpipe.pipeline.synth.blend import BLENDS
from dfpipe.pipeline.synth.colour import MODES as COLOUR_MODES
from dfpipe.pipeline.video.writing import QUALITY_CRF

#: `reencode` is no fake: each real video's main track at the fakes' qualities (label real),
#: so a benchmark's reals go through the same encoder as its fakes and compression is no cue
METHODS = ("swap", "reenact", "self-blend", "external", "reencode")
#: how swap / reenact fakes pick (target, source): random, similar-looking different people
#: (face descriptors), or a CSV (--pairs-file)
PAIRINGS = ("random", "similar", "file")
TRANSFORMS = ("similarity", "affine")
#: what places a swapped face: the face meshes (rendered in the target's pose and expression,
#: when both faces have one) or the 5 landmarks (one still crop, moved by a similarity)
GEOMETRIES = ("mesh", "landmarks")


@dataclass
class SynthConfig:
    """Parameters of a synthesis run (recorded in run.json and every fake's `meta`).

    `smooth` is the sigma (frames) of temporal landmark smoothing; `follow_motion` the share
    of a swapped face carried along the real video's optical flow from the previous frame
    (0 = placed by the landmarks alone; see synth/motion.py). `per_video` caps the frames changed in each fake (from the start of the target track);
    None changes the whole track. `pairs` is the number of swap fakes (ignored when a pairs
    file is given); `self-blend` makes one fake per real track; `external` one per
    generator folder; `reencode` one real copy per real video's main track and quality.
    `variants` multiplies the fakes: each track or pair gives that many, each with its own
    random draws (see `fake.plan_jobs`). `seed` is the one parameter a run into an existing
    DS2 may change: the new seed's fakes are added next to the others (`ADDED_PARAMS`).
    """

    method: str = "swap"
    blend: str = "alpha"
    colour: str = "auto"  # auto = lct for swaps (a donor's skin under the target's light), none otherwise
    # (a reenactment moves the target's own pixels)
    qualities: tuple[str, ...] = ("c23",)
    pairs: int = 10
    variants: int = 1
    per_video: int | None = None
    seed: int = 0
    region: str = "full"
    mask_warp: str = "elastic"
    deform: bool = True
    transform: str = "similarity"
    smooth: float = 1.5
    follow_motion: float = 0.8
    pairs_file: str | None = None
    pairing: str = "random"
    geometry: str = "mesh"
    occluders: bool = True  # mesh swap: the target keeps what covers its face (a hand, a mic)
    from_generator: str | None = None
    harmonizer: str | None = None
    device: str = "cpu"
    include_reals: bool = True
    min_track_faces: int = 2
    image_format: str = "png"

    def __post_init__(self) -> None:
        # `--blend rct` (the spelling): colour transfer rct, then an alpha blend
        if self.blend in COLOUR_MODES and self.blend != "none":
            if self.colour not in ("auto", "none", self.blend):
                raise ValueError(f"--blend {self.blend} is a colour mode, and --colour {self.colour} asks another")
            self.colour, self.blend = self.blend, "alpha"
        if self.colour == "auto":
            self.colour = "lct" if self.method == "swap" and not self.from_generator else "none"
        self.qualities = tuple(dict.fromkeys(self.qualities))
        _check("method", self.method, METHODS)
        if self.pairs_file and self.pairing == "random":
            self.pairing = "file"  # `--pairs-file F` alone means pairs from the file
        _check("pairing", self.pairing, PAIRINGS)
        if self.pairing == "file" and not self.pairs_file:
            raise ValueError("--pairing file needs --pairs-file CSV")
        _check("blend", self.blend, BLENDS)
        _check("colour", self.colour, COLOUR_MODES)
        _check("region", self.region, REGIONS)
        _check("mask warp", self.mask_warp, WARPS)
        _check("transform", self.transform, TRANSFORMS)
        _check("geometry", self.geometry, GEOMETRIES)
        if not self.qualities:
            raise ValueError("give at least one --quality")
        for q in self.qualities:
            _check("quality", q, tuple(QUALITY_CRF))
        if self.pairs < 1:
            raise ValueError(f"--pairs must be at least 1, got {self.pairs}")
        if self.variants < 1:
            raise ValueError(f"--variants must be at least 1, got {self.variants}")
        if self.variants > 1 and self.method == "reencode":
            raise ValueError("--method reencode draws nothing at random: --variants would give identical copies")
        if not 0.0 <= self.follow_motion < 1.0:
            raise ValueError(f"--follow-motion must be in [0, 1), got {self.follow_motion}")
        if self.smooth < 0:
            raise ValueError(f"--smooth must be >= 0 frames, got {self.smooth}")
        if self.per_video is not None and self.per_video < 1:
            raise ValueError(f"--per-video must be at least 1, got {self.per_video}")
        if self.method == "external" and not self.from_generator:
            raise ValueError("--method external needs --from-generator DIR (a folder of generated frames per target video)")
        if self.from_generator and self.method != "external":
            if self.method != "swap":
                raise ValueError("--from-generator goes with --method external")
            self.method = "external"  # `synthesize DS --from-generator DIR` alone means external
        if self.blend == "dovenet" and not self.harmonizer:
            raise ValueError("--blend dovenet needs --harmonizer CKPT (a DoveNet checkpoint from train-harmonizer)")

    def output_params(self) -> dict[str, Any]:
        """What decides the output: a re-run with other values is refused (run.json), but
        for those of `ADDED_PARAMS`."""
        params = asdict(self)
        params["qualities"] = list(self.qualities)
        params.pop("device")
        return params


#: parameters whose other value adds fakes to an existing DS2 instead of being refused: the
#: fakes of another seed have other ids (the seed is hashed into each key), so a DS2 can hold
#: several seeds' fakes, and re-running any of those runs resumes it
ADDED_PARAMS = ("seed",)


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
