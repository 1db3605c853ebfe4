"""The staff dashboard: the load at a glance, drawn by static/js/dashboard.js."""

from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from generation import selectors
from generation.staff import staff_permission_required


@staff_permission_required("generation.view_dashboard")
@require_GET
def dashboard(request):
    return render(request, "generation/dashboard.html", {"windows": list(selectors.LOAD_WINDOWS)})


@staff_permission_required("generation.view_dashboard")
@require_GET
def dashboard_data(request):
    window = request.GET.get("window", "hour")
    if window not in selectors.LOAD_WINDOWS:
        choices = ", ".join(selectors.LOAD_WINDOWS)
        return JsonResponse(
            {"error": {"code": "invalid", "message": f"window is one of {choices}", "field": "window"}}, status=400
        )
    return JsonResponse({**selectors.load_series(window), "now": selectors.load_now()})
