"""Faces: `detect` (RetinaFace, batched), `tracks` (linking faces across frames), `align`
(crop matrices), and the extract stage: `config` (ExtractConfig), `inputs` (files, folders,
datasets -> video jobs), `rows` (one video's face rows, streamed), `threads` (decode ahead,
encode beside the detector), `video` (one video to its parts), `stage` (`extract()`)."""

from dfpipe.pipeline.faces.config import ExtractConfig
from dfpipe.pipeline.faces.inputs import VideoJob
from dfpipe.pipeline.faces.stage import ExtractStage, extract, extract_video
from dfpipe.pipeline.faces.video import process_video

__all__ = ["ExtractConfig", "ExtractStage", "VideoJob", "extract", "extract_video", "process_video"]
