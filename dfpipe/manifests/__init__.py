"""Parquet manifests: schemas, atomic part writers, readers, validation."""

from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA, ERROR_CODES  # noqa: F401
