"""`dfpipe perturb DS --out DS2`: DeeperForensics-1.0's perturbations of a dataset, as a stage.

A work item is one (video, perturbation) pair; its copy in DS2 is a new video
`<video_id>-<perturbation>` (e.g. `a1b2...-GB-3`, `a1b2...-CS-2+JPEG-4`) that keeps the
original's label, method, compression and split, with the lineage in its meta:
`perturbation` (the name), `perturbation_kinds` ([[kind, level], ...]) and
`perturbed_from` (the original video id). With `clean` (the default) DS2 also holds the
originals themselves, as perturbation `none`, so one evaluation gives the clean row of the
robustness table beside the perturbed ones (`dfpipe evaluate --by perturbation`).

Two modes:
- `crops`: the aligned face crops of DS are perturbed in place of the frames (fast, no
  decoding; blur and resampling act at crop scale). DS2 is ready to evaluate.
- `videos`: every frame of the original file is perturbed and the video re-encoded,
  as DeeperForensics-1.0 made its perturbed set: x264 at CRF `FRAME_CRF` (visually
  lossless: the perturbation, not our encoder, degrades the frames), or at the level's CRF
  for video compression (VC). DS2's rows are pending: run `dfpipe extract DS2` next.

The faces part of a copy is written before its videos row, which is the completion
marker: a re-run skips finished copies, a killed one leaves nothing a reader sees.
Randomness (block positions, noise) is seeded by the copy's id and `seed`, so a re-run
and a cluster run make the same pixels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from dfpipe.manifests.codec import decode_image, encode_image
from dfpipe.manifests.ids import relative_path
from dfpipe.manifests.parts import part_keys, part_path, read_table, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import FACES_SCHEMA, SPLITS_TABLE, VIDEOS_SCHEMA
from dfpipe.pipeline.perturb import ops
from dfpipe.runtime.stage import ItemError, Outcome, Stage, StageSummary, run_stage

MODES = ("crops", "videos")
#: x264 CRF of a perturbed video when the perturbation is not video compression
FRAME_CRF = 10
CLEAN = "none"


@dataclass(frozen=True)
class PerturbConfig:
    """What `perturb` makes: `spec` as `ops.parse_spec` reads it ("GB:3", "CS,JPEG:2",
    "GB:3+JPEG:2", "all"), in `mode`; `mixed` adds that many random mixes of `mix_kinds`
    distinct kinds per video (DeeperForensics' mixed perturbations)."""

    spec: str = "all"
    mode: str = "crops"
    clean: bool = True
    mixed: int = 0
    mix_kinds: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mixed < 0 or not 2 <= self.mix_kinds <= len(ops.IMAGE_KINDS):
            raise ValueError(f"--mixed must be >= 0 and --mix-kinds within 2..{len(ops.IMAGE_KINDS)}")
        mixes = self.mixes()
        if self.mode == "crops" and any(kind == "VC" for mix in mixes for kind, _ in mix):
            raise ValueError("VC (video compression) re-encodes videos: use --mode videos, or leave VC out of "
                             "--kinds for crops (e.g. --kinds CS,CC,BW,GNC,GB,JPEG)")
        if not mixes and not self.mixed:
            raise ValueError("nothing to make: give --kinds or --mixed")

    def mixes(self) -> list[list[tuple[str, int]]]:
        if not self.spec:
            return []
        mixes = ops.parse_spec(self.spec)
        if self.mode == "crops" and self.spec.strip().lower() == "all":  # all that applies to crops
            mixes = [m for m in mixes if all(k != "VC" for k, _ in m)]
        return mixes


@dataclass(frozen=True)
class Copy:
    """One perturbed copy to make: the original's videos row and what to apply."""

    video: dict
    mix: tuple[tuple[str, int], ...]
    split: str | None

    @property
    def name(self) -> str:
        return ops.spec_name(list(self.mix))

    @property
    def video_id(self) -> str:
        return f"{self.video['video_id']}-{self.name}"


def copy_rng(video_id: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{video_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def kept_splits(ds: Path, seed: int) -> dict[str, str]:
    """video_id -> split as training with `seed` resolved it (`DS/splits/`), if it ran: the
    copies of a test video stay test videos when DS2 is evaluated."""
    import pyarrow.parquet as pq

    path = part_path(ds, SPLITS_TABLE, f"seed{seed}")
    if not path.is_file():
        return {}
    table = pq.read_table(path, columns=["video_id", "split"]).to_pylist()
    return {r["video_id"]: r["split"] for r in table if isinstance(r["split"], str)}


def plan_copies(ds: Path, config: PerturbConfig) -> list[Copy]:
    """Every labelled ok video of `ds` times every perturbation (plus its seeded mixes)."""
    videos = [v for v in read_table(ds, "videos", VIDEOS_SCHEMA).to_pylist()
              if v["status"] == "ok" and v["label"] in ("real", "fake")]
    if not videos:
        raise ValueError(f"{ds} has no extracted real or fake video (status ok): run `dfpipe extract` and give labels")
    splits = kept_splits(ds, config.seed)
    mixes = [tuple(m) for m in config.mixes()]
    copies = []
    for v in videos:
        split = v["split"] if isinstance(v["split"], str) else splits.get(v["video_id"])
        own = list(mixes)
        rng = copy_rng(v["video_id"], config.seed)
        for _ in range(config.mixed):
            own.append(tuple(sorted(ops.random_mix(rng, config.mix_kinds), key=lambda kl: ops.KINDS.index(kl[0]))))
        copies.extend(Copy(v, mix, split) for mix in dict.fromkeys(own))
    return copies


def copy_row(copy: Copy, ds: Path, out: Path, **values: Any) -> dict:
    """The videos row of a copy: the original's, re-identified, with its lineage."""
    row = dict(copy.video)
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    meta.update(perturbation=copy.name, perturbation_kinds=[list(kl) for kl in copy.mix],
                perturbed_from=copy.video["video_id"])
    row.update(video_id=copy.video_id, meta=json.dumps(meta, sort_keys=True), split=copy.split,
               path=relative_path(ds / copy.video["path"], out))
    row.update(values)
    return row


def perturb_crops(copy: Copy, ds: Path, out: Path, seed: int) -> None:
    """Each crop of the original perturbed; face ids follow the copy's video id."""
    vid = copy.video["video_id"]
    rows_in = video_faces(ds, vid)
    rng = copy_rng(copy.video_id, seed)
    rows = []
    for face in rows_in:
        image = decode_image(face["image"])
        rest = face["face_id"][len(vid):] if face["face_id"].startswith(vid) else f"-{face['face_id']}"
        face = dict(face, face_id=copy.video_id + rest, video_id=copy.video_id,
                    split=copy.split or face["split"])
        face["image"] = encode_image(ops.apply_mixed(image, list(copy.mix), rng), face["image_format"] or "png")
        rows.append(face)
    write_part_atomic(rows_to_table(rows, FACES_SCHEMA), part_path(out, "faces", copy.video_id))
    write_part_atomic(rows_to_table([copy_row(copy, ds, out)], VIDEOS_SCHEMA), part_path(out, "videos", copy.video_id))


def video_faces(ds: Path, video_id: str) -> list[dict]:
    """The faces rows of one video (its own part file: extract writes one per video)."""
    import pyarrow.parquet as pq

    path = part_path(ds, "faces", video_id)
    if not path.is_file():
        raise ItemError("bad_input", f"no faces part for {video_id} in {ds}: re-run `dfpipe extract`")
    return pq.read_table(path, schema=FACES_SCHEMA).to_pylist()


def perturb_video(copy: Copy, ds: Path, out: Path, seed: int) -> None:
    """Every frame of the original perturbed and re-encoded into `out/perturbed/`; the row
    pending, for `dfpipe extract DS2`."""
    from dfpipe.pipeline.video.decode import iter_frames, probe
    from dfpipe.pipeline.video.writing import write_video

    src = ds / copy.video["path"]
    frame_ops = [(k, lv) for k, lv in copy.mix if k != "VC"]
    vc = [lv for k, lv in copy.mix if k == "VC"]
    crf = ops.VIDEO_CRF[vc[0]] if vc else FRAME_CRF
    rng = copy_rng(copy.video_id, seed)
    dest = out / "perturbed" / f"{copy.video_id}.mp4"
    info = probe(src)  # a DecodeError is an ItemError: the copy's error row says why
    frames = (ops.apply_mixed(f.image, frame_ops, rng) if frame_ops else f.image for f in iter_frames(src))
    write_video(frames, dest, fps=info.fps, crf=crf, audio_from=src if info.has_audio else None)
    row = copy_row(copy, ds, out, path=relative_path(dest, out), status="pending", n_sampled=None, n_faces=None,
                   n_tracks=None, error_code=None, error=None)
    write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(out, "videos", copy.video_id))


def copy_clean(ds: Path, out: Path, videos: Iterable[dict], mode: str) -> None:
    """The originals as they are (perturbation `none`): rows re-rooted, faces copied in
    crops mode; in videos mode pending, so one extract of DS2 treats all alike."""
    done = part_keys(out, "videos")
    for v in videos:
        vid = v["video_id"]
        if vid in done:
            continue
        meta = json.loads(v["meta"]) if v.get("meta") else {}
        meta.update(perturbation=CLEAN, perturbation_kinds=[], perturbed_from=vid)
        row = dict(v, path=relative_path(ds / v["path"], out), meta=json.dumps(meta, sort_keys=True))
        if mode == "crops":
            faces = video_faces(ds, vid)
            write_part_atomic(rows_to_table(faces, FACES_SCHEMA), part_path(out, "faces", vid))
        else:
            row.update(status="pending", n_sampled=None, n_faces=None, n_tracks=None)
        write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(out, "videos", vid))


class PerturbStage(Stage[Copy]):
    """Perturbed copies of the dataset `ds` into `root` (DS2), as `config` asks."""

    name = "perturb"
    unit = "copies"

    def __init__(self, ds: str | Path, out: str | Path, config: PerturbConfig) -> None:
        self.config = config
        self.ds = Path(ds)
        self.root = Path(out)  # as given: the summary names it so
        self.ds_dir, self.out_dir = self.ds.absolute(), self.root.absolute()  # workers use absolute paths

    def params(self) -> dict[str, Any]:
        return {**asdict(self.config), "source_dataset": str(self.ds_dir)}

    def items(self) -> list[Copy]:
        return plan_copies(self.ds_dir, self.config)

    def key(self, copy: Copy) -> str:
        return copy.video_id

    def done(self) -> set[str]:
        return part_keys(self.root, "videos")

    def prepare(self, items: Sequence[Copy]) -> None:
        if self.config.clean:
            originals = {c.video["video_id"]: dict(c.video, split=c.split) for c in items}
            copy_clean(self.ds_dir, self.out_dir, originals.values(), self.config.mode)

    def setup_worker(self, on_worker: bool) -> None:
        if on_worker:
            from dfpipe.runtime.parallel import set_worker_threads

            set_worker_threads(1)

    def process(self, copy: Copy, on_worker: bool) -> None:
        if self.config.mode == "crops":
            perturb_crops(copy, self.ds_dir, self.out_dir, self.config.seed)
        else:
            perturb_video(copy, self.ds_dir, self.out_dir, self.config.seed)

    def write_error(self, copy: Copy, error: ItemError) -> None:
        row = copy_row(copy, self.ds_dir, self.out_dir, status="error", error_code=error.code, error=error.message)
        write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(self.out_dir, "videos", copy.video_id))

    def outcomes(self, keys: Iterable[str]) -> list[Outcome]:
        wanted = set(keys)
        out = []
        for r in read_table(self.root, "videos", VIDEOS_SCHEMA).to_pylist():
            if r["video_id"] not in wanted:
                continue
            name = f"{r['video_id']}"
            if r["status"] == "error":
                out.append(Outcome(r["video_id"], "error", name, r["error_code"], r["error"]))
            else:
                out.append(Outcome(r["video_id"], "ok", name, counts={"faces": int(r["n_faces"] or 0)}))
        return out


def perturb(
    ds: str | Path,
    out: str | Path,
    config: PerturbConfig | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> StageSummary:
    """Perturbed copies of every labelled video of `ds` into `out` (DS2), as `config` asks.

    Raises ValueError / ParamsMismatch before any work on bad arguments or when `out` was
    made with other parameters; a copy that fails gets an error row, and the run goes on."""
    config = config or PerturbConfig()
    ds, out = Path(ds), Path(out)
    if not (ds / "videos").is_dir():
        raise ValueError(f"{ds} is not a dataset directory (no videos/ folder); run `dfpipe extract` first")
    if ds.absolute() == out.absolute():
        raise ValueError("--out must be a new dataset directory, not the dataset itself")
    return run_stage(PerturbStage(ds, out, config), workers=workers, scheduler=scheduler, progress=progress)
