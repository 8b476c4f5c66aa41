"""Append-only rows written in batches off the request path, without losing any."""
