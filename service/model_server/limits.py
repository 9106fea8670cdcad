"""The model server's bounds on one request and on concurrent work.

Why: anyone who reaches the ports can send requests, so each request is bounded before
anything is allocated for it (rows, bytes), and work the server cannot start soon is
refused at once (RESOURCE_EXHAUSTED) instead of queued without bound.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from service.model_server.errors import busy, invalid, too_large

DEFAULT_MAX_ROWS = 10_000
# gRPC's own default receive limit; TF Serving raises it to 2 GiB, which lets one client
# make the server buffer that much. 10,000 rows take ~0.4 MB as a protobuf, ~2.5 MB as JSON.
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
# Each in-flight request holds its decoded inputs (at most ~1.5 MB at the row limit).
DEFAULT_MAX_CONCURRENT_PREDICTS = 128
# The signature's one string input is a category name. Long strings add up in merged
# batches and are copied by the model: one sklearn call on 64 merged 4 MB category strings
# raised the peak RSS by 490 MB.
DEFAULT_MAX_STRING_BYTES = 1024


@dataclass(frozen=True)
class RequestLimits:
    max_rows: int = DEFAULT_MAX_ROWS
    """Rows (the first dimension) one Predict may carry."""
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    """Largest gRPC message and REST body accepted."""
    max_concurrent_predicts: int = DEFAULT_MAX_CONCURRENT_PREDICTS
    """Predict calls in flight at once (decoding, queued or running); 0: no cap."""
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES
    """Longest value of a string input."""


def check_rows(name: str, rows: int, max_rows: int) -> None:
    """At least one row (an empty batch is refused, not run) and at most ``max_rows``."""
    if rows < 1:
        raise invalid(f"input '{name}': a request needs at least one row")
    if rows > max_rows:
        # "larger than", as gRPC's own size refusal says: clients tell "too large" (do not
        # retry) from "overloaded" (retry later) by it; both are RESOURCE_EXHAUSTED.
        raise too_large(
            f"input '{name}': {rows} rows, larger than the limit of {max_rows} rows per request"
        )


class InflightLimit:
    """Counts Predict calls in flight on the event loop and refuses those beyond the cap."""

    def __init__(self, limit: int):
        self.limit = limit
        self.inflight = 0

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        if self.limit and self.inflight >= self.limit:
            raise busy(f"Too many concurrent Predict calls (limit {self.limit}); retry later")
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1
