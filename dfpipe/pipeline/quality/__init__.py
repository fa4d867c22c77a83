"""Dataset quality metrics (SR-DF / Celeb-DF style): Mask-SSIM, perceptual distance, Ewarp;
and per fake face (FaceShifter / SimSwap style): identity, pose, expression, seam.

- `ssim`: SSIM and both Mask-SSIM variants, equal to scikit-image's, vectorised.
- `perceptual`: LPIPS-VGG and VGG relu2_2 feature MSE on one backbone pass.
- `ewarp`: warping error with OpenCV DIS flow and the forward-backward occlusion mask.
- `identity`: dlib face-descriptor distances to donor and target, identity retrieval.
- `geometry`: pose error, expression error (mesh after Procrustes), seam score.
- `frames`: the frames at chosen indices, streamed.
- `config`: QualityConfig.
- `score`: the metrics of one video (`score_video`).
- `stage`: `score_quality(DS)`, the stage writing `DS/quality/frames` and `DS/quality/videos`.
- `report`: the per-method summary table, HTML / Markdown report with PNG plots.
"""

from dfpipe.pipeline.quality.config import METRICS, QualityConfig
from dfpipe.pipeline.quality.score import read_quality
from dfpipe.pipeline.quality.stage import QualityStage, score_quality

__all__ = ["METRICS", "QualityConfig", "QualityStage", "read_quality", "score_quality"]
