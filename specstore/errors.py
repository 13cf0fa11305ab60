"""Typed errors raised by the services, turned into HTTP in one place (api.py).

Every error answers with the same JSON shape::

    {"success": false, "id": null, "errors": ["<message>", ...],
     "error": {"status": <status>, "message": "<the messages, one per line>"}}
"""

from __future__ import annotations


class SpecstoreError(Exception):
    """Base of every error that becomes an HTTP answer."""

    status = 500

    def __init__(self, *messages: str) -> None:
        super().__init__(*messages)
        self.messages = list(messages) or [self.__class__.__doc__ or "error"]


class BadRequest(SpecstoreError):
    """The request could not be understood."""

    status = 400


class InvalidSpec(BadRequest):
    """The spec does not match the schema; one message per problem, each with its path."""


class Unauthorized(SpecstoreError):
    """No credentials, or credentials that do not verify."""

    status = 401


class Forbidden(SpecstoreError):
    """Valid credentials that do not allow this."""

    status = 403


class NotFound(SpecstoreError):
    """No such thing (or not visible to the caller)."""

    status = 404


class RequestTimeout(SpecstoreError):
    """The request's body took too long to arrive."""

    status = 408


class PayloadTooLarge(SpecstoreError):
    """The request body is larger than allowed."""

    status = 413


class UnsupportedMediaType(SpecstoreError):
    """The request body's content type is not accepted."""

    status = 415


class TooManyRequests(SpecstoreError):
    """More requests than allowed; ``retry_after``: seconds until one more is."""

    status = 429

    def __init__(self, *messages: str, retry_after: int) -> None:
        super().__init__(*messages)
        self.retry_after = retry_after


class ServiceUnavailable(SpecstoreError):
    """A dependency (the auth key, the database) cannot be reached right now."""

    status = 503
