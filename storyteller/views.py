from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect
from django.views import defaults
from django.views.csrf import csrf_failure as html_csrf_failure

from generation import realtime, selectors
from storyteller.http import api_error


def home(request):
    return redirect("stories:library" if request.user.is_authenticated else "login")


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def csrf_failure(request, reason=""):
    """The API answers a missing or wrong CSRF token in JSON, like every other API error."""
    if _is_api(request):
        return api_error(403, "csrf", f"CSRF check failed: {reason}. Send the csrftoken cookie's value in X-CSRFToken.")
    return html_csrf_failure(request, reason=reason)


# The error pages (templates/400.html and the like, in the site's look) answer everywhere
# but under /api/, where a client reads JSON whatever went wrong.


def bad_request(request, exception):
    if _is_api(request):
        return api_error(400, "invalid", "The request could not be read.")
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if _is_api(request):
        return api_error(403, "forbidden", "You may not do this.")
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if _is_api(request):
        return api_error(404, "not_found", "The API has nothing at this address.")
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return api_error(500, "internal", "Something went wrong on the server; it has been logged.")
    return defaults.server_error(request)


def healthz(request):
    """200 when the database, Redis and at least one worker answer; 503 naming what is down."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {exc}"
    workers = {}
    try:
        realtime.redis_client().ping()
        checks["redis"] = "ok"
        workers = realtime.live_workers()
    except Exception as exc:
        checks["redis"] = f"down: {exc}"
    checks["workers"] = (
        f"ok: {len(workers)}" if workers else f"down: no worker heartbeat in the last {realtime.WORKER_ALIVE_S} s"
    )
    try:
        checks["model"] = selectors.model_config_active().name
    except Exception as exc:
        checks["model"] = f"down: {exc}"
    healthy = all(not str(v).startswith("down") for v in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)
