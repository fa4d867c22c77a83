"""Reenactment: the target keeps its face while its mouth, eyes and brows follow a source.

Face2Face and First-Order-Motion are the anchors; with a Face Mesh on both videos it needs
no trained generator. Expression = a mesh minus its person's mean mesh over the track,
both with pose removed (`meshswap.normalised`). For each target frame, the target's mean
shape plus the source's expression of the matching frame, put back in the target's pose,
is where the target's face is moved to (`meshwarp.warp_to_mesh` of the target frame onto
itself). Where the source opens its mouth over a closed target mouth there are no target
pixels to stretch: the mouth interior comes from the source's crop, matched in colour to
the target's lips.
"""

from __future__ import annotations

import cv2
import numpy as np

from dfpipe.pipeline.faces.topology import LIPS_INNER, LIPS_OUTER
from dfpipe.pipeline.synth.meshswap import FrameMesh, apply_similarity, opening_triangles, blend_mask, normalised, track_meshes
from dfpipe.pipeline.synth.meshwarp import warp_to_mesh


#: the target's own mouth interior is stretched when its lip gap is at least this share of
#: the moved mouth's; below it (a closed mouth opened by the source) it comes from the source
OWN_MOUTH = 0.5


class SourceExpression:
    """The source track's expression on every frame of its span (Face Mesh run on the source
    video, placed by its track), and its sampled crops (for the mouth interior)."""

    def __init__(self, rows: list[dict], video_path, mesher) -> None:
        from dfpipe.manifests.codec import decode_image
        from dfpipe.pipeline.faces.align import transform_mesh
        from dfpipe.pipeline.synth.track import plan_track

        rows = sorted((r for r in rows if r.get("mesh") is not None), key=lambda r: r["frame_index"])
        if len(rows) < 2:
            raise ValueError("the source track needs a face mesh on at least 2 frames")
        plan = plan_track(rows)
        # the source's motion as it is (no smoothing), Face Mesh batched over its frames
        meshes = track_meshes(video_path, plan.boxes, plan.landmarks, mesher)
        norm = {f: normalised(m)[0] for f, m in meshes.items()}
        if len(norm) < 2:
            raise ValueError("the source video ended before its track")
        self.frames = np.array(sorted(norm))
        stack = np.stack([norm[f] for f in self.frames])
        self.offsets = stack - stack.mean(axis=0)
        self.sampled = np.array([r["frame_index"] for r in rows])
        self.crops = [decode_image(r["image"]) for r in rows]
        self.crop_meshes = [transform_mesh(r["mesh"], r["matrix"]) for r in rows]

    def at(self, position: int) -> tuple[np.ndarray, int]:
        """(468 x 2 expression offset, index of the nearest sampled crop) `position` frames
        into the source track (looping over it when the target is longer)."""
        k = position % len(self.frames)
        nearest = int(np.argmin(np.abs(self.sampled - self.frames[k])))
        return self.offsets[k], nearest


class ReenactGenerator:
    """Moves each target frame's face to the target's shape with the source's expression.

    Returns (fake foreground, uint8 soft blend mask) as the Composer's generators do.
    """

    name = "reenact"
    mask_from_generator = True

    def __init__(self, source: SourceExpression, target_meshes: list[np.ndarray], boxes: dict[int, np.ndarray],
                 mesher, first_frame: int) -> None:
        self.source = source
        self.frame_mesh = FrameMesh(boxes, mesher)
        self.target_mean = np.mean([normalised(m)[0] for m in target_meshes], axis=0)
        self.first_frame = first_frame

    def prepare_frames(self, frames: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        """Batch the coming frames' Face Mesh (see `FrameMesh.prepare`)."""
        self.frame_mesh.prepare(frames)

    def __call__(self, frame: np.ndarray, frame_index: int, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mesh = self.frame_mesh(frame, frame_index, landmarks)
        offset, nearest = self.source.at(frame_index - self.first_frame)
        _, m = normalised(mesh)
        dst = np.array(mesh, copy=True)
        dst[:, :2] = apply_similarity(np.linalg.inv(m), self.target_mean + offset)
        mouth = opening_triangles()["mouth"]
        if _lip_gap(mesh) >= OWN_MOUTH * _lip_gap(dst):  # the target's own mouth is open enough to stretch
            fg, valid = warp_to_mesh(frame, mesh, dst, frame.shape)
            inside = cv2.erode(valid, np.ones((5, 5), np.uint8))
            mask = np.minimum(blend_mask([mesh, dst], frame.shape, []), inside)
            return fg, mask
        fg, valid = warp_to_mesh(frame, mesh, dst, frame.shape, keep=~mouth)
        # the mouth opening from the source's crop, in the target's lip colour
        inner, inner_valid = warp_to_mesh(self.source.crops[nearest], self.source.crop_meshes[nearest], dst, frame.shape,
                                          keep=mouth)
        opening = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillPoly(opening, [np.rint(dst[list(LIPS_INNER), :2]).astype(np.int32)], 255)
        use = (opening > 0) & (inner_valid > 0)
        if use.any():
            lips = np.zeros(frame.shape[:2], np.uint8)
            cv2.fillPoly(lips, [np.rint(mesh[list(LIPS_OUTER), :2]).astype(np.int32)], 255)
            fg[use] = _match_colour(inner[use], frame[lips > 0], inner[inner_valid > 0])
            valid = np.where(use, 255, valid).astype(np.uint8)
        inside = cv2.erode(valid, np.ones((5, 5), np.uint8))
        mask = np.minimum(blend_mask([mesh, dst], frame.shape, []), inside)
        return fg, mask


def _lip_gap(mesh: np.ndarray) -> float:
    """Inner-lip gap over the outer eye-corner distance."""
    m = np.asarray(mesh, np.float64)[:, :2]
    return float(np.linalg.norm(m[13] - m[14]) / max(np.linalg.norm(m[33] - m[263]), 1e-6))


def _match_colour(pixels: np.ndarray, reference: np.ndarray, source_all: np.ndarray) -> np.ndarray:
    """Shift `pixels` (N x 3 of the source's mouth) so the source mouth's mean colour moves
    half-way to `reference`'s (the target's lips): teeth stay light, the tint follows."""
    if len(reference) == 0 or len(source_all) == 0:
        return pixels
    shift = 0.5 * (reference.reshape(-1, 3).mean(0) - source_all.reshape(-1, 3).mean(0))
    return np.clip(pixels.astype(np.float32) + shift, 0, 255).astype(np.uint8)
