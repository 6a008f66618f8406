"""Errors with TF Serving's status codes, and their HTTP equivalents (TF Serving's REST mapping)."""
import grpc

# TF Serving's REST server maps canonical status codes to HTTP like this (http_rest_api_util ToHTTPStatusCode);
# 413 for oversize bodies is ours (TF Serving's HTTP layer rejects them before any status exists).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.DEADLINE_EXCEEDED: 408,
    grpc.StatusCode.CANCELLED: 408,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 503,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}


class ServingError(Exception):
    """A request failure with a gRPC status code; REST answers `{"error": message}` with `http_status`.

    Args:
      code: `grpc.StatusCode`.
      message: the client-facing message.
      http_status: override of the HTTP status (default: `HTTP_STATUS[code]`, else 500).
    """

    def __init__(self, code, message, http_status=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or HTTP_STATUS.get(code, 500)


def invalid(message):
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message):
    return ServingError(grpc.StatusCode.NOT_FOUND, message)
