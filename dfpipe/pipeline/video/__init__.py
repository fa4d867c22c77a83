"""Video in and out, one job per module: `probe` opens and probes a file and names its
errors (`DecodeError`, `VideoInfo`, `Frame`, rotation), `sampling` says which frames to keep,
`pyav_backend` and `decord_backend` decode them, `decode` is the entry point (`iter_frames`,
which picks a backend, and the public names callers import), and `writing` encodes videos
with the ffmpeg binary and makes the odd test media decoding must handle."""
