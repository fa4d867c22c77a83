"""Schemas of `DS/quality/frames/` and `DS/quality/videos/`, registered for `validate`."""

from __future__ import annotations

import pyarrow as pa

from dfpipe.manifests.schema import SCHEMA_VERSION, register_table

FRAMES_TABLE = "quality/frames"
VIDEOS_TABLE = "quality/videos"

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
METRIC_COLUMNS = ("mask_ssim", "mask_ssim_inside", "ssim", "lpips", "vgg_mse", "ewarp")

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
    ],
    metadata={"dfpipe.table": FRAMES_TABLE, "dfpipe.schema_version": SCHEMA_VERSION},
)

QUALITY_VIDEOS_SCHEMA = pa.schema(
    [
        *_KEYS,
        pa.field("n_frames", pa.int64()),  # frame rows behind the means
        *[pa.field(c, pa.float64()) for c in METRIC_COLUMNS],
        pa.field("metrics", pa.string()),  # comma-separated metrics computed
        pa.field("flow_on", pa.string()),  # "source" or "self": where Ewarp's flow came from
        pa.field("status", pa.string(), nullable=False),  # ok / error
        pa.field("error_code", pa.string()),
        pa.field("error", pa.string()),
    ],
    metadata={"dfpipe.table": VIDEOS_TABLE, "dfpipe.schema_version": SCHEMA_VERSION},
)

register_table(FRAMES_TABLE, QUALITY_FRAMES_SCHEMA)
register_table(VIDEOS_TABLE, QUALITY_VIDEOS_SCHEMA)
