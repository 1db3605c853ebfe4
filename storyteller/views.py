import logging

from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect
from django.views import defaults
from django.views.csrf import csrf_failure as html_csrf_failure

from generation import realtime, selectors
from storyteller.http import api_error

log = logging.getLogger(__name__)


def home(request):
    return redirect("stories:library" if request.user.is_authenticated else "login")


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def csrf_failure(request, reason=""):
    """The API answers a missing or wrong CSRF token in JSON, like every other API error."""
    if _is_api(request):
        reason = reason.rstrip(".")
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
    """200 when the database and Redis answer and a worker can generate; 503 otherwise.

    It says states, never what an error said (that names hosts and users): those go to the
    log, and each worker's own error is on the staff dashboard. `workers` is "ok: N" with
    N the workers that have a model loaded, or "down: why"; `worker_states` lists every
    live worker's state, model and load.
    """
    checks = {"database": "ok", "redis": "ok"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        # One line per probe while it lasts, not a traceback: load balancers ask often.
        log.warning("Health check: the database does not answer: %s", exc)
        checks["database"] = "down"
    try:
        realtime.redis_client().ping()
        workers = list(realtime.live_workers().values())
    except Exception as exc:
        log.warning("Health check: Redis does not answer: %s", exc)
        checks["redis"] = "down"
        # The workers' rows say what their Redis heartbeats would have.
        workers = _workers_from_the_database() if checks["database"] == "ok" else []
    checks["workers"], states = selectors.workers_health(workers)
    try:
        checks["model"] = selectors.model_config_active().name
    except Exception as exc:
        log.warning("Health check: the active model configuration cannot be read: %s", exc)
        checks["model"] = "down"
    healthy = all(not value.startswith("down") for value in checks.values())
    return JsonResponse({**checks, "worker_states": states}, status=200 if healthy else 503)


def _workers_from_the_database() -> list[dict]:
    try:
        return list(selectors.workers_alive().values("state", "model_name", "live_requests"))
    except Exception as exc:
        log.warning("Health check: the workers' rows cannot be read: %s", exc)
        return []
