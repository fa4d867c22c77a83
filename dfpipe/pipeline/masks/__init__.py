"""Manipulation masks: `facemask` (regions of a face from its mesh or landmarks, with SBI / Face
X-ray deformations), `pairmask` (the difference of a fake crop from its real pair),
`video` (one fake's faces part), `stage` (`masks(DS)`: the `dfpipe masks` stage)."""

from dfpipe.pipeline.masks.pairmask import PairMaskConfig
from dfpipe.pipeline.masks.stage import MasksStage, masks

__all__ = ["MasksStage", "PairMaskConfig", "masks"]
