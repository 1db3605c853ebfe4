"""JSON request parsing and error answers shared by the API views."""

import json
from functools import wraps

from django.http import JsonResponse


class ApiError(Exception):
    """An error a client can act on: rendered as {"error": {"code", "message", "field"?}}."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None, extra=None):
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.extra = status, code, message, field, extra or {}

    def response(self) -> JsonResponse:
        error = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        return JsonResponse({"error": error, **self.extra}, status=self.status)


def api_error(status: int, code: str, message: str, **kwargs) -> JsonResponse:
    return ApiError(status, code, message, **kwargs).response()


def json_body(request) -> dict:
    """The request's JSON object, or ApiError 400 naming what is wrong with it."""
    try:
        data = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid", "The request body must be a JSON object.")
    return data


def api_view(view):
    """Anonymous callers get 403 JSON (never a login redirect); ApiError becomes its answer."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return api_error(403, "forbidden", "Log in to use the API.")
        try:
            return view(request, *args, **kwargs)
        except ApiError as exc:
            return exc.response()

    return wrapper
