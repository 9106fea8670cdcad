"""Batch scoring over gRPC: streaming readers, row validation, the async client, resumable runs."""
