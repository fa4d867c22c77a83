"""How fast `dfpipe perturb` makes its copies, serially on this machine.

    python bench/perturb.py [--repeats 3]

Builds four real-face clips (public-domain photos, camera motion, 480 x 270, 40 frames),
extracts every 5th frame (320-pixel crops), then times, as the median of `--repeats` runs:
- `--mode crops --kinds all` (6 kinds x 5 levels = 30 copies per video): crops per second;
- `--mode videos` for GB:3 (every frame blurred, re-encoded at CRF 10) and VC:3 (CRF 35):
  video frames per second, decode + perturb + encode.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from dfpipe.manifests.parts import read_table
    from dfpipe.media.faceclips import render_clip
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.ingest import ingest
    from dfpipe.pipeline.perturb.stage import PerturbConfig, perturb

    work = Path(tempfile.mkdtemp(prefix="bench-perturb-"))
    faces = [("astronaut",), ("grace_hopper",), ("astronaut", "grace_hopper"), ("grace_hopper", "astronaut")]
    for i, who in enumerate(faces):
        render_clip(work / "folder" / "real" / f"clip{i}.mp4", n_frames=40, width=480, height=270, faces=who,
                    pan=0.2 + 0.1 * i)
    ingest("folders", work / "folder", work / "ds")
    extract([work / "ds"], None, ExtractConfig(every=5), workers=0, progress=False)
    n_faces = read_table(work / "ds", "faces", columns=["face_id"]).num_rows
    n_frames = 4 * 40

    def timed(config: PerturbConfig) -> float:
        runs = []
        for _ in range(args.repeats):
            shutil.rmtree(work / "out", ignore_errors=True)
            start = time.perf_counter()
            summary = perturb(work / "ds", work / "out", config, workers=0, progress=False)
            runs.append(time.perf_counter() - start)
            assert summary.n_errors == 0
        return statistics.median(runs)

    crops = timed(PerturbConfig(spec="all", mode="crops", clean=False))
    print(f"crops, all 30 perturbations: {30 * n_faces} crops in {crops:.2f} s = {30 * n_faces / crops:.0f} crops/s "
          f"(median of {args.repeats})")
    for spec in ("GB:3", "VC:3"):
        seconds = timed(PerturbConfig(spec=spec, mode="videos", clean=False))
        print(f"videos, {spec}: {n_frames} frames of 480 x 270 in {seconds:.2f} s = {n_frames / seconds:.0f} frames/s "
              f"(median of {args.repeats})")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
