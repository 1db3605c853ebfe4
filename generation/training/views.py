"""Staff pages of training: a job's progress as JSON (its admin page polls it), cancel and
activate buttons, and the side-by-side page that continues one prompt with two models."""

from django import forms
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from generation import services
from generation.models import Comparison, ModelConfig, TrainingJob
from generation.params import MAX_NEW_TOKENS
from generation.staff import staff_permission_required
from generation.training import selectors as training_selectors
from generation.training import services as training

DEFAULT_PROMPT = "Once upon a time, there was a cat named Whiskers."


def _job_page(job):
    return reverse("admin:generation_trainingjob_change", args=[job.pk])


@staff_permission_required("generation.view_trainingjob")
@require_GET
def job_data(request, job_id):
    job = get_object_or_404(TrainingJob.objects.select_related("result"), pk=job_id)
    return JsonResponse(training_selectors.training_progress(job))


@staff_permission_required("generation.cancel_trainingjob")
@require_POST
def job_cancel(request, job_id):
    job = get_object_or_404(TrainingJob, pk=job_id)
    if training.training_job_cancel(job):
        messages.success(request, "Cancelling: the job stops within one step and keeps what it learned.")
    else:
        messages.warning(request, f"The job had already ended ({job.status}).")
    return redirect(_job_page(job))


@staff_permission_required("generation.activate_modelconfig")
@require_POST
def job_activate(request, job_id):
    job = get_object_or_404(TrainingJob.objects.select_related("result"), pk=job_id)
    if job.result is None:
        messages.error(request, "This job has no trained model to activate.")
    else:
        services.model_config_activate(job.result)
        messages.success(request, f"{job.result.name} is now the active model; the workers switch to it live.")
    return redirect(_job_page(job))


class CompareForm(forms.Form):
    first = forms.ModelChoiceField(ModelConfig.objects.order_by("name"), label="Model A")
    second = forms.ModelChoiceField(ModelConfig.objects.order_by("name"), label="Model B")
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=20_000, initial=DEFAULT_PROMPT)
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=1)
    max_new_tokens = forms.IntegerField(label="New tokens", min_value=1, max_value=MAX_NEW_TOKENS, initial=60)
    temperature = forms.FloatField(min_value=0, max_value=5, initial=0.8)


@staff_permission_required("generation.add_comparison")
def compare(request):
    """The same prompt, seed and sampling, continued by two configurations. From a job's
    page, A is its base and B what it trained."""
    if request.method == "POST":
        form = CompareForm(request.POST)
        if form.is_valid():
            comparison = training.comparison_start(user=request.user, **form.cleaned_data)
            return redirect("compare-result", comparison.pk)
    else:
        initial = {}
        wanted = request.GET.get("job", "")
        job = TrainingJob.objects.filter(pk=int(wanted)).first() if wanted.isdigit() else None
        if job is not None:
            initial = {"first": job.base_id, "second": job.result_id}
        form = CompareForm(initial=initial)
    return render(request, "generation/compare.html", {"form": form})


@staff_permission_required("generation.view_comparison")
@require_GET
def compare_result(request, comparison_id):
    comparison = get_object_or_404(Comparison.objects.select_related("first", "second"), pk=comparison_id)
    return render(request, "generation/compare_result.html", {"comparison": comparison})


@staff_permission_required("generation.view_comparison")
@require_GET
def compare_data(request, comparison_id):
    comparison = get_object_or_404(Comparison, pk=comparison_id)
    return JsonResponse(
        {
            "status": comparison.status,
            "first": comparison.first_text,
            "second": comparison.second_text,
            "error": comparison.error_message or None,
        }
    )
