"""Parquet manifests: schemas, atomic part writers, readers, validation."""

from dfpipe.manifests.schema import ERROR_CODES, FACES_SCHEMA, VIDEOS_SCHEMA  # noqa: F401
