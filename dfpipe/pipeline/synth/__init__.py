"""SR-DF-style synthesis: fakes with masks and lineage from a real dataset.

Modules: `config` (SynthConfig), `pairing` (which tracks), `track` (per-frame landmarks),
generators `swap`, `selfblend`, `external`, `compose` (mask + colour + blend of one
frame), `fake` (which fakes, and making one into its rows), `stage` (the resumable,
Dask-parallel stage on the one stage runner).
"""

from dfpipe.pipeline.synth.config import METHODS, SynthConfig
from dfpipe.pipeline.synth.fake import FakeJob, plan_jobs
from dfpipe.pipeline.synth.stage import SynthStage, make_fake, synthesize

__all__ = ["METHODS", "FakeJob", "SynthConfig", "SynthStage", "make_fake", "plan_jobs", "synthesize"]
