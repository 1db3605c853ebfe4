"""JSON request parsing and error answers shared by the API views."""

import json
from functools import wraps

from django.http import JsonResponse
from django.urls import Resolver404, resolve


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


# The protocol's error code for each HTTP status an answer under /api/ may come with.
_CODES = {400: "invalid", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 413: "too_large", 429: "limit"}


class ApiAnswersInJson:
    """Middleware, just inside SecurityMiddleware: every answer under /api/ is JSON, also
    the ones that Django makes before or around a view: a method a view does not take (405,
    with its Allow header), an address without its final slash (CommonMiddleware would
    redirect, and a redirected POST loses its body: 404 naming the right address instead),
    any other redirect (kept, with a JSON body) and any other error page. (SecurityMiddleware's
    own redirect to https:// goes out as it is.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/") and not request.path.endswith("/") and _slash_meant(request.path):
            # Before CommonMiddleware, which would redirect (or, with debug pages on, fail
            # a POST it cannot redirect).
            return api_error(404, "not_found", f"The API has nothing at this address; did you mean {request.path}/?")
        response = self.get_response(request)
        if not request.path.startswith("/api/") or response.status_code < 300:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        status = response.status_code
        if status == 405:
            answer = api_error(405, _CODES[405], f"{request.method} is not allowed here; use {response['Allow']}.")
        elif response.has_header("Location"):
            # Elsewhere (to https://, in production): said in JSON too, the redirect kept.
            answer = api_error(status, "moved", f"This address has moved to {response['Location']}.")
        else:
            answer = api_error(
                status, _CODES.get(status, "internal" if status >= 500 else "invalid"), response.reason_phrase
            )
        # The other middleware's headers (X-Frame-Options, Vary, Allow, Location...) stay.
        for header, value in response.items():
            if header.lower() not in ("content-type", "content-length"):
                answer[header] = value
        return answer


def _slash_meant(path: str) -> bool:
    """Whether the path is an API address but for its final slash."""
    try:
        resolve(path)
        return False
    except Resolver404:
        pass
    try:
        resolve(path + "/")
        return True
    except Resolver404:
        return False
