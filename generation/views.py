"""The staff dashboard: the load at a glance, drawn by static/js/dashboard.js."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from generation import realtime, selectors
from generation.models import Worker


@staff_member_required
@require_GET
def dashboard(request):
    return render(request, "generation/dashboard.html", {"windows": list(selectors.LOAD_WINDOWS)})


@staff_member_required
@require_GET
def dashboard_data(request):
    window = request.GET.get("window", "hour")
    if window not in selectors.LOAD_WINDOWS:
        choices = ", ".join(selectors.LOAD_WINDOWS)
        return JsonResponse(
            {"error": {"code": "invalid", "message": f"window is one of {choices}", "field": "window"}}, status=400
        )
    data = selectors.load_series(window)
    workers = [w for w in Worker.objects.all() if w.is_alive]
    try:
        queue_now = realtime.queue_length()
    except Exception:
        queue_now = None  # Redis is away; the series above still come from the database
    data["now"] = {
        "workers": [
            {
                "name": w.name,
                "state": w.state,
                "model": w.model_name,
                "loading": w.loading,
                "error": w.error,
                "live_requests": w.live_requests,
            }
            for w in workers
        ],
        "model": selectors.model_config_active().name,
        "celery_queue": queue_now,
    }
    return JsonResponse(data)
