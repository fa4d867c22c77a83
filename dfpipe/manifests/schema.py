"""Explicit pyarrow schemas: the contract between stages.

Every stage reads and writes only these tables. Columns are nullable unless a stage
cannot work without them; `validate` checks the non-nullable ones. Keep this file and
`docs/manifests.md` in step.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1"

#: pending = listed (by ingest) but not yet extracted
VIDEO_STATUS = ("pending", "ok", "error")
LABELS = ("real", "fake", "unknown")
#: How a user gives labels, for every message that refuses or warns about unlabelled data.
HOW_TO_LABEL = (
    "give labels at ingest: put the files under ROOT/real/ and ROOT/fake/<method>/ and run "
    "`dfpipe ingest folders ROOT --out DS`, or list them (columns path,label[,method,source,split]) and run "
    "`dfpipe ingest list LISTING.csv --out DS`; public layouts: `dfpipe ingest ff++|dfdc|celebdf ROOT --out DS`; "
    "then `dfpipe extract DS`"
)
SPLITS = ("train", "val", "test")

#: Stable error codes a videos/ row may carry. Tests and users match on these.
ERROR_CODES = {
    "unreadable": "the path cannot be opened (missing, permission, a directory)",
    "empty_file": "the file has zero bytes",
    "not_video": "the file is not a container FFmpeg can read",
    "no_video_stream": "the container has no video stream (audio-only, data)",
    "truncated": "decoding stopped early or no frame could be decoded",
    "too_large": "a frame exceeds --max-pixels",
    "duplicate": "the same content was already listed under another path",
    "decode_error": "FFmpeg raised while decoding",
    "detector_error": "the face detector raised",
    "source_missing": "a fake's source video is not in the dataset",
    "pair_mismatch": "a fake and its source differ in size or length",
    "bad_input": "an input file of a stage is malformed",
    "internal": "an unexpected error in dfpipe (a bug: please report it)",
}

#: Values of the `mesh` column: 468 Face Mesh points x (x, y, z).
MESH_POINTS = 468
MESH_VALUES = 3 * MESH_POINTS

#: Face quality flag columns and what sets them (thresholds are extract options).
FACE_FLAGS = {
    "flag_low_mesh_score": "Face Mesh's face-presence score under --flag-mesh-score (occluded, not a face)",
    "flag_extreme_pose": "|yaw| or |pitch| over --flag-pose degrees (near-profile, looking far up or down)",
    "flag_tiny": "the box's shorter side under --flag-tiny pixels (upsampled crop)",
    "flag_blurry": "sharpness under --flag-blur (motion or focus blur, heavy compression)",
}

_f32 = pa.float32()
_f64 = pa.float64()

VIDEOS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("kind", pa.string()),  # "video", or "image": a still read as one frame
        pa.field("label", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("method", pa.string()),
        pa.field("compression", pa.string()),
        pa.field("source_video_id", pa.string()),
        pa.field("target_video_id", pa.string()),
        pa.field("split", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("rotation", pa.int32()),
        pa.field("fps", _f64),
        pa.field("n_frames", pa.int64()),
        pa.field("duration", _f64),
        pa.field("codec", pa.string()),
        pa.field("has_audio", pa.bool_()),
        pa.field("n_sampled", pa.int64()),
        pa.field("n_faces", pa.int64()),
        pa.field("n_tracks", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_code", pa.string()),
        pa.field("error", pa.string()),
        # free-form lineage and stage details as a JSON object (synthesis parameters,
        # ingest notes); typed columns above are what other stages rely on.
        pa.field("meta", pa.string()),
    ],
    metadata={"dfpipe.table": "videos", "dfpipe.schema_version": SCHEMA_VERSION},
)

FACES_SCHEMA = pa.schema(
    [
        pa.field("face_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("timestamp", _f64),
        pa.field("track_id", pa.int32(), nullable=False),
        pa.field("shot_id", pa.int32()),  # camera shot within the video, from 0; no track spans two
        pa.field("score", _f32),
        # detection box in frame pixels (upright frame, after rotation)
        pa.field("x1", _f32),
        pa.field("y1", _f32),
        pa.field("x2", _f32),
        pa.field("y2", _f32),
        # 5 landmarks (left eye, right eye, nose, left mouth, right mouth) as x0,y0,...,x4,y4
        pa.field("landmarks", pa.list_(_f32, 10)),
        # MediaPipe Face Mesh: 468 points as x0,y0,z0,x1,... (reshape to 468 x 3); x, y in frame
        # pixels, z relative depth in the same scale (smaller = nearer the camera); null with
        # --mesh none. mesh_score is the network's face-presence probability.
        pa.field("mesh", pa.list_(_f32, MESH_VALUES)),
        pa.field("mesh_score", _f32),
        # head pose in degrees from the canonical face fitted to the mesh, 0/0/0 = frontal and
        # upright facing the camera: yaw > 0 turns to the image's right, pitch > 0 nods up,
        # roll > 0 tilts clockwise in the image
        pa.field("yaw", _f32),
        pa.field("pitch", _f32),
        pa.field("roll", _f32),
        # variance of the Laplacian of the face crop at 128 px (grey): low = blurred
        pa.field("sharpness", _f32),
        # quality flags (faces are kept; filter with them): see FACE_FLAGS
        *[pa.field(name, pa.bool_()) for name in FACE_FLAGS],
        # 2x3 affine matrix (row-major) from frame pixels to crop pixels
        pa.field("matrix", pa.list_(_f64, 6)),
        pa.field("crop", pa.string()),  # "align", "mesh" or "box"
        pa.field("size", pa.int32()),
        pa.field("image_format", pa.string()),  # "png" or "jpeg"
        pa.field("image", pa.binary()),
        pa.field("mask", pa.binary()),  # 8-bit PNG, 255 = manipulated; null when unknown
        pa.field("mask_source", pa.string()),  # "pair", "shipped", "mesh", "landmarks", "synth"
        pa.field("label", pa.string()),
        pa.field("split", pa.string()),
    ],
    metadata={"dfpipe.table": "faces", "dfpipe.schema_version": SCHEMA_VERSION},
)

#: Columns cheap to read: everything but encoded pixels (the mesh is about 5 KiB a face).
FACES_INDEX_COLUMNS = [f.name for f in FACES_SCHEMA if f.name not in ("image", "mask")]

# ----------------------------------------------------------------------------- quality
# `DS/quality/frames/` and `DS/quality/videos/`, written by `dfpipe score-quality`

QUALITY_FRAMES_TABLE = "quality/frames"
QUALITY_VIDEOS_TABLE = "quality/videos"

#: Columns that say which video a row is about, shared by both tables.
_KEYS = [
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("source_video_id", pa.string()),
    pa.field("dataset", pa.string()),
    pa.field("method", pa.string()),
    pa.field("compression", pa.string()),
    pa.field("label", pa.string()),
    pa.field("region", pa.string()),  # "crop" (the aligned face) or "frame" (--full-frame)
]

#: Metric columns; NaN/null where a metric does not apply (a real has no Mask-SSIM).
#: identity (dlib descriptor distances), pose_error (degrees), expression_error (mesh after
#: Procrustes / inter-ocular distance) and seam (boundary gradient, fake over real) per face.
METRIC_COLUMNS = (
    "mask_ssim", "mask_ssim_inside", "ssim", "lpips", "vgg_mse", "ewarp",
    "id_to_source", "id_to_target", "pose_error", "expression_error", "seam",
)

QUALITY_FRAMES_SCHEMA = pa.schema(
    [
        *_KEYS,
        pa.field("face_id", pa.string()),  # null in full-frame mode
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("track_id", pa.int32()),
        pa.field("mask_source", pa.string()),
        pa.field("mask_area", pa.float64()),  # fraction of the region inside the mask
        *[pa.field(c, pa.float64()) for c in METRIC_COLUMNS],
        pa.field("ewarp_valid", pa.float64()),  # fraction of pixels not occluded
        pa.field("id_nearest", pa.string()),  # real video whose identity is nearest the face
    ],
    metadata={"dfpipe.table": QUALITY_FRAMES_TABLE, "dfpipe.schema_version": SCHEMA_VERSION},
)

QUALITY_VIDEOS_SCHEMA = pa.schema(
    [
        *_KEYS,
        pa.field("n_frames", pa.int64()),  # frame rows behind the means
        *[pa.field(c, pa.float64()) for c in METRIC_COLUMNS],
        pa.field("id_retrieval", pa.float64()),  # fraction of frames nearest the expected identity
        pa.field("metrics", pa.string()),  # comma-separated metrics computed
        pa.field("flow_on", pa.string()),  # "source" or "self": where Ewarp's flow came from
        pa.field("status", pa.string(), nullable=False),  # ok / error
        pa.field("error_code", pa.string()),
        pa.field("error", pa.string()),
    ],
    metadata={"dfpipe.table": QUALITY_VIDEOS_TABLE, "dfpipe.schema_version": SCHEMA_VERSION},
)

# ----------------------------------------------------------------------------- masks
# `DS/masks/`: one row per fake `dfpipe masks` handled, its completion marker (the masks
# themselves are the `mask` column of `faces/`)

MASKS_TABLE = "masks"

MASKS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # ok / error
        pa.field("error_code", pa.string()),
        pa.field("error", pa.string()),
        pa.field("n_faces", pa.int64()),  # faces with a mask
        # faces by where their mask came from
        pa.field("n_shipped", pa.int64()),
        pa.field("n_pair", pa.int64()),
        pa.field("n_landmarks", pa.int64()),
        pa.field("n_mesh", pa.int64()),
        pa.field("note", pa.string()),  # e.g. a mask video that could not be read (fallback used)
    ],
    metadata={"dfpipe.table": MASKS_TABLE, "dfpipe.schema_version": SCHEMA_VERSION},
)

# ----------------------------------------------------------------------------- splits
# `DS/splits/`: the train / val / test split of every video that has faces, one part per
# seed (`part-seed<N>.parquet`), written by `dfpipe train` so that `evaluate` and later runs
# read the same assignment (videos added later join their group's split).

SPLITS_TABLE = "splits"

SPLITS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("group_id", pa.string()),  # videos sharing a source / target / identity
        pa.field("origin", pa.string()),  # given (dataset or listing) / made (dfpipe)
        pa.field("seed", pa.int64()),
    ],
    metadata={"dfpipe.table": SPLITS_TABLE, "dfpipe.schema_version": SCHEMA_VERSION},
)

#: Every table a dataset directory may hold, by its folder under the root.
TABLES = {
    "videos": VIDEOS_SCHEMA,
    "faces": FACES_SCHEMA,
    QUALITY_FRAMES_TABLE: QUALITY_FRAMES_SCHEMA,
    QUALITY_VIDEOS_TABLE: QUALITY_VIDEOS_SCHEMA,
    MASKS_TABLE: MASKS_SCHEMA,
    SPLITS_TABLE: SPLITS_SCHEMA,
}
