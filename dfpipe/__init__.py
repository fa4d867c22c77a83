"""dfpipe: turn folders of videos into measured deepfake-detection benchmarks."""

__version__ = "0.1.0"
