"""Errors that carry their HTTP status; one handler renders them all in the error envelope."""

from __future__ import annotations


class ApiError(Exception):
    """A failure a client can act on: HTTP status, stable code, short message, what to fix."""

    status_code: int = 500
    code: str = "INTERNAL_SERVER_ERROR"
    message: str = "Internal server error"

    def __init__(
        self,
        description: str | None = None,
        *,
        code: str | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description or message or self.message)
        self.description = description
        if code is not None:
            self.code = code
        if message is not None:
            self.message = message
        self.headers = headers or {}


class InvalidParameter(ApiError):
    """The request is malformed: bad JSON, wrong type, missing field, bad path id."""

    status_code = 400
    code = "INVALID_PARAMETER"
    message = "Invalid parameter"


class Unauthorized(ApiError):
    """No usable credentials."""

    status_code = 401
    code = "UNAUTHORIZED"
    message = "Authentication is required"


class Forbidden(ApiError):
    """Authenticated, but not allowed to do this in this team."""

    status_code = 403
    code = "FORBIDDEN"
    message = "Access denied"


class NotFound(ApiError):
    """The resource does not exist or belongs to another team."""

    status_code = 404
    code = "NOT_FOUND"
    message = "Not found"


class MethodNotAllowed(ApiError):
    """The path exists but not with this HTTP method."""

    status_code = 405
    code = "METHOD_NOT_ALLOWED"
    message = "Method not allowed"


class PayloadTooLarge(ApiError):
    """The request body is larger than the server accepts."""

    status_code = 413
    code = "PAYLOAD_TOO_LARGE"
    message = "Request body too large"


class Unprocessable(ApiError):
    """Well-formed, but breaks a business rule."""

    status_code = 422
    code = "UNPROCESSABLE_ENTITY"
    message = "Request cannot be processed"


class TooManyRequests(ApiError):
    """The key used up its hourly request budget."""

    status_code = 429
    code = "TOO_MANY_REQUESTS"
    message = "Rate limit exceeded"


class ServiceUnavailable(ApiError):
    """A dependency (the metadata database) cannot be reached right now."""

    status_code = 503
    code = "SERVICE_UNAVAILABLE"
    message = "Service temporarily unavailable"
