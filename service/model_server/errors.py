"""One error type for the server, carrying a gRPC code, and the one gRPC → HTTP table.

The HTTP codes are TF Serving's (``http_server.cc``), so REST clients see what they would
see in front of TF Serving.
"""

from __future__ import annotations

import grpc

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


# gRPC clients refuse trailers over 8 KiB by default: error details must stay well below.
MAX_MESSAGE_CHARS = 1000


class ServingError(Exception):
    """A request failed with a status code a client can act on.

    ``http_status`` overrides the table where REST has a more precise code than the gRPC
    status (413 for a request over a size limit); ``retry_after`` (seconds) is sent as
    REST's ``Retry-After`` when the server refuses work because it is busy.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        http_status: int | None = None,
        retry_after: int | None = None,
    ):
        if len(message) > MAX_MESSAGE_CHARS:  # it may echo a client's 100 kB name back
            message = message[:MAX_MESSAGE_CHARS] + "…"
        super().__init__(message)
        self.code = code
        self.message = message
        self._http_status = http_status
        self.retry_after = retry_after

    @property
    def http_status(self) -> int:
        if self._http_status is not None:
            return self._http_status
        return HTTP_STATUS.get(self.code, 500)


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def too_large(message: str) -> ServingError:
    """A request over one of the server's size limits (rows, bytes): REST 413."""
    return ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, http_status=413)


def busy(message: str, code: grpc.StatusCode = grpc.StatusCode.RESOURCE_EXHAUSTED) -> ServingError:
    """The server refuses work it has no room for; the client may retry after a second."""
    return ServingError(code, message, retry_after=1)
