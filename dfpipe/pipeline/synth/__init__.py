"""SR-DF-style synthesis: fakes with masks and lineage from a real dataset.

Modules: `config` (SynthConfig), `pairing` (which tracks), `track` (per-frame landmarks),
generators `swap`, `selfblend`, `external`, `compose` (mask + colour + blend of one
frame), `run` (the per-fake work item and the Dask-parallel, resumable stage).
"""

from dfpipe.pipeline.synth.config import METHODS, SynthConfig
from dfpipe.pipeline.synth.run import SynthSummary, make_fake, plan_jobs, synthesize

__all__ = ["METHODS", "SynthConfig", "SynthSummary", "make_fake", "plan_jobs", "synthesize"]
