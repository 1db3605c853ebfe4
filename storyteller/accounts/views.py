from django.conf import settings
from django.contrib.auth import login
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from storyteller import ratelimit
from storyteller.accounts.forms import SignupForm


@require_http_methods(["GET", "POST"])
def signup(request):
    form = SignupForm(request.POST or None)
    if request.method == "POST":
        wait = ratelimit.hit(
            "signup", ratelimit.client_address(request), limit=settings.STORYTELLER_SIGNUPS_PER_HOUR, window_s=3600
        )
        if wait is not None:
            message = f"Too many sign-ups from your address; try again in {_minutes(wait)}."
            return render(request, "registration/signup.html", {"form": form, "refusal": message}, status=429)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("stories:library")
    return render(request, "registration/signup.html", {"form": form})


def locked_out(request, response=None, credentials=None):
    """django-axes' answer to a login from an address that failed too often (429)."""
    context = {
        "failures": settings.AXES_FAILURE_LIMIT,
        "wait": _minutes(settings.AXES_COOLOFF_TIME.total_seconds()),
    }
    return render(request, "registration/locked_out.html", context, status=429)


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"
