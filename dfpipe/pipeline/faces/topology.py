"""Named regions of the 468-point Face Mesh topology, derived once from the canonical face.

The canonical triangulation (`canonical_face()`, 898 triangles) covers the face as one
sheet: eyes and mouth are triangulated across, so the only boundary is the face outline.
`outline()` is that boundary (edges used by exactly one triangle, walked into one closed
polygon, MediaPipe's FACE_OVAL). Lips, eyes and brows are index sets named once below (the
rings MediaPipe's own drawing utilities connect); `region_triangles()` turns the mask
regions (`full`, `no_forehead`, `inner`, the names of `masks.facemask.REGIONS`) into the
triangles they cover, chosen in the frontal canonical face. A mask drawn as the union of a
region's triangles follows the face whatever its pose: on a profile the far half folds
behind the near half instead of spilling past the nose.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from functools import lru_cache

import numpy as np
import cv2

from dfpipe.pipeline.faces.mesh import NOSE_TIP, NUM_POINTS, canonical_face

#: Outer lip contour, closed, from the image-left mouth corner (61) along the lower lip.
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
#: Inner lip contour (the mouth opening), closed, from the image-left inner corner (78).
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
#: Eye contours, closed, outer corner first, lower lid then upper lid. Image-left is the
#: person's right eye on a frontal face (RetinaFace's first point).
EYE_IMAGE_LEFT = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
EYE_IMAGE_RIGHT = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
#: Eyebrows: lower edge outer to inner, then upper edge inner to outer (a closed strip).
BROW_IMAGE_LEFT = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
BROW_IMAGE_RIGHT = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)
#: Top of the nose bridge, between the eyes.
NOSE_BRIDGE = 168

#: The mask regions, as in `dfpipe.pipeline.masks.facemask.REGIONS`.
REGIONS = ("full", "no_forehead", "inner")


def _upper_lid(eye: tuple[int, ...]) -> tuple[int, ...]:
    """Outer corner, upper lid, inner corner of an eye contour listed as above."""
    half = len(eye) // 2
    return (eye[0],) + tuple(reversed(eye[half + 1:])) + (eye[half],)


@lru_cache(maxsize=1)
def boundary_edges() -> tuple[tuple[int, int], ...]:
    """Edges (i < j) of the canonical triangulation used by exactly one triangle."""
    _, triangles = canonical_face()
    count: Counter = Counter()
    for a, b, c in np.asarray(triangles):
        for e in ((a, b), (b, c), (c, a)):
            count[(int(min(e)), int(max(e)))] += 1
    return tuple(sorted(e for e, n in count.items() if n == 1))


@lru_cache(maxsize=1)
def outline() -> tuple[int, ...]:
    """The face outline: the triangulation's boundary as one closed loop of vertex indices
    (first vertex not repeated), starting at the top of the forehead and running towards
    the image's left first (counter-clockwise on screen for a frontal face).

    Raises ValueError when the boundary is not a single simple loop (a broken model file)."""
    neighbours: dict[int, list[int]] = defaultdict(list)
    for a, b in boundary_edges():
        neighbours[a].append(b)
        neighbours[b].append(a)
    if any(len(n) != 2 for n in neighbours.values()):
        raise ValueError("canonical face boundary is not a simple loop")
    vertices, _ = canonical_face()
    start = max(neighbours, key=lambda i: vertices[i, 1])  # canonical y is up: forehead top
    first = min(neighbours[start], key=lambda i: vertices[i, 0])  # towards the image's left
    loop = [start, first]
    while True:
        a, b = neighbours[loop[-1]]
        nxt = a if a != loop[-2] else b
        if nxt == start:
            break
        loop.append(nxt)
    if len(loop) != len(neighbours):
        raise ValueError(f"canonical face boundary has several loops ({len(loop)} of {len(neighbours)} vertices in one)")
    return tuple(loop)


def frontal_points() -> np.ndarray:
    """(468, 2) canonical vertices seen frontally in image axes (x right, y down), cm."""
    vertices, _ = canonical_face()
    return np.stack([vertices[:, 0], -vertices[:, 1]], axis=1)


def _lower_outline() -> tuple[int, ...]:
    """The outline below the eye line (canonical y under the eye corners), chin included,
    from the image-left side to the image-right side."""
    v, _ = canonical_face()
    eye_y = v[[EYE_IMAGE_LEFT[0], EYE_IMAGE_RIGHT[0]], 1].mean()
    loop = list(outline())
    below = [v[i, 1] < eye_y for i in loop]
    # rotate the loop so it starts at its first vertex below the eye line after one above
    start = next(k for k in range(len(loop)) if below[k] and not below[k - 1])
    ordered = loop[start:] + loop[:start]
    arc = []
    for i in ordered:
        if v[i, 1] >= eye_y:
            break
        arc.append(i)
    if v[arc[0], 0] > v[arc[-1], 0]:
        arc.reverse()
    return tuple(arc)


@lru_cache(maxsize=1)
def no_forehead_polygon() -> tuple[int, ...]:
    """Closed polygon of the face below the eyes: the outline from the image-left temple
    round the chin to the image-right temple, back across the image-right upper eyelid, the
    nose bridge and the image-left upper eyelid (Face X-ray's jaw + eyes, on the mesh)."""
    return _lower_outline() + _upper_lid(EYE_IMAGE_RIGHT) + (NOSE_BRIDGE,) + tuple(reversed(_upper_lid(EYE_IMAGE_LEFT)))


@lru_cache(maxsize=1)
def inner_points() -> tuple[int, ...]:
    """Brows, eyes, nose tip and outer lips: the points whose hull is the inner face."""
    return tuple(sorted(set(BROW_IMAGE_LEFT + BROW_IMAGE_RIGHT + EYE_IMAGE_LEFT + EYE_IMAGE_RIGHT
                            + LIPS_OUTER + (NOSE_BRIDGE, NOSE_TIP))))


@lru_cache(maxsize=1)
def inner_polygon() -> tuple[int, ...]:
    """The convex hull of `inner_points()` in the frontal canonical face, as a closed
    polygon of vertex indices (hull order)."""
    indices = np.asarray(inner_points())
    hull = cv2.convexHull(frontal_points()[indices].astype(np.float32), returnPoints=False)
    return tuple(int(indices[k]) for k in hull.reshape(-1))


@lru_cache(maxsize=None)
def region_polygon(region: str) -> tuple[int, ...]:
    """A region's closed polygon (vertex indices): the outline for `full`,
    `no_forehead_polygon()`, `inner_polygon()`."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    return {"full": outline, "no_forehead": no_forehead_polygon, "inner": inner_polygon}[region]()


@lru_cache(maxsize=None)
def region_triangles(region: str) -> np.ndarray:
    """(K, 3) int64 canonical triangles that make up a mask region.

    `full`: every triangle (the face inside the outline). The others: triangles whose
    centroid lies inside `region_polygon(region)` in the frontal canonical face
    (`no_forehead`: cheeks, nose, mouth and chin below the upper eyelids; `inner`: brows,
    eyes, nose and mouth, without the cheeks' outer part and the jaw line)."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    _, triangles = canonical_face()
    triangles = np.array(triangles, dtype=np.int64)  # a copy: canonical_face's own stays writable
    if region != "full":
        front = frontal_points()
        contour = front[list(region_polygon(region))].astype(np.float32).reshape(-1, 1, 2)
        centroids = front[triangles].mean(axis=1)
        inside = [cv2.pointPolygonTest(contour, (float(x), float(y)), False) > 0 for x, y in centroids]
        triangles = triangles[np.asarray(inside, dtype=bool)]
    triangles.flags.writeable = False  # cached: callers share it
    return triangles


@lru_cache(maxsize=None)
def region_vertices(region: str) -> tuple[int, ...]:
    """Sorted vertex indices the region's triangles use."""
    return tuple(int(i) for i in np.unique(region_triangles(region)))


def check_points(points: np.ndarray) -> np.ndarray:
    """(468, 2+) points as a float64 (468, 2) array; ValueError for another count."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1 and pts.size % NUM_POINTS == 0:  # a faces row's flat x0, y0, z0, x1, ...
        pts = pts.reshape(NUM_POINTS, -1)
    if pts.ndim != 2 or pts.shape[0] != NUM_POINTS or pts.shape[1] < 2:
        raise ValueError(f"a face mesh has {NUM_POINTS} points of 2 or 3 values, got shape {np.shape(points)}")
    return pts[:, :2]
