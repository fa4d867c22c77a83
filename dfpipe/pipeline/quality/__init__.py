"""Dataset quality metrics (SR-DF / Celeb-DF style): Mask-SSIM, perceptual distance, Ewarp.

- `ssim`: SSIM and both Mask-SSIM variants, equal to scikit-image's, vectorised.
- `perceptual`: LPIPS-VGG and VGG relu2_2 feature MSE on one backbone pass.
- `ewarp`: warping error with OpenCV DIS flow and the forward-backward occlusion mask.
- `score`: `score_quality(DS)`, per-frame and per-video tables under `DS/quality/`.
- `report`: terminal summary, HTML report with PNG plots.
"""
