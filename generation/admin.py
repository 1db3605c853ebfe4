from django import forms
from django.contrib import admin
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.admin.widgets import AutocompleteSelectMultiple
from django.db.models import Q
from django.urls import path
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.text import Truncator

from engine.errors import CorpusError
from generation import selectors, services
from generation.models import Generation, ModelConfig, Preset, TrainingJob, UsageLimit, Worker, WriterUsage
from generation.realtime import WORKER_ALIVE_S
from generation.training import selectors as training_selectors
from generation.training import services as training
from generation.training.uploads import read_text_file, size_checked


class ReadOnly:
    """For rows the site writes itself: staff read them (and may delete), never edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ModelConfig)
class ModelConfigAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "dtype", "device", "is_active", "updated_at"]
    list_filter = ["is_active"]
    actions = ["activate"]
    fieldsets = [
        (None, {"fields": ["name", "source", "dtype", "device", "context_window", "is_active"]}),
        ("Engine limits", {"fields": ["max_batch_size", "max_tokens_in_flight", "prefix_cache_tokens"]}),
        ("Trained", {"fields": ["adapter"], "classes": ["collapse"]}),
        ("Default sampling", {"fields": ["max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty"]}),
        (
            "What writers may choose",
            {"fields": ["writer_max_new_tokens", "writer_min_temperature", "writer_max_temperature"]},
        ),
    ]

    readonly_fields = ["workers"]
    ACTIVATE = "generation.activate_modelconfig"

    def has_activate_permission(self, request):
        return request.user.has_perm(self.ACTIVATE)

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        if self.has_activate_permission(request):
            return fields
        if obj is not None and obj.is_active:
            # Editing the active configuration changes what every writer gets, as activating does.
            return [field for _, options in self.fieldsets for field in options["fields"]] + list(fields)
        return [*fields, "is_active"]  # ticking "active" in the form is activating too

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        return [*fieldsets, ("Workers", {"fields": ["workers"]})] if obj is not None else fieldsets

    @admin.display(description="What each worker runs")
    def workers(self, obj):
        """Where the switch to this configuration stands, worker by worker."""
        lines = []
        for worker in selectors.workers_alive():
            if worker.config_name == obj.name:
                lines.append(f"{worker.name}: serving {worker.model_name} ({worker.dtype}, {worker.device})")
            elif worker.loading == obj.name:
                lines.append(f"{worker.name}: loading it; {worker.model_name or 'nothing'} serves meanwhile")
            elif worker.error.startswith(f"{obj.name}: "):
                lines.append(f"{worker.name}: could not load it ({worker.error}); {worker.model_name} serves")
            else:
                lines.append(f"{worker.name}: serving {worker.config_name or 'nothing'}")
        return "\n".join(lines) or f"No worker has reported in the last {WORKER_ALIVE_S} s."

    def save_model(self, request, obj, form, change):
        services.model_config_save(obj)

    @admin.action(description="Make the selected configuration the active one", permissions=["activate"])
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one configuration to activate.", level="error")
            return
        config = services.model_config_activate(queryset.get())
        self.message_user(request, f"{config.name} is now the active model.")


class GenerationOutcomeFilter(admin.SimpleListFilter):
    """How a generation ended, in the operator's words; "failed" is finish reason error."""

    title = "outcome"
    parameter_name = "outcome"
    OUTCOMES = {
        "failed": Q(finish_reason="error"),
        "cancelled": Q(finish_reason="cancelled"),
        "completed": Q(status=Generation.Status.FINISHED) & ~Q(finish_reason__in=["error", "cancelled"]),
        "active": Q(status__in=Generation.ACTIVE),
    }

    def lookups(self, request, model_admin):
        names = {"failed": "Failed (error)", "cancelled": "Cancelled", "completed": "Completed"}
        return [*names.items(), ("active", "Waiting or running")]

    def queryset(self, request, queryset):
        wanted = self.OUTCOMES.get(self.value())
        return queryset.filter(wanted) if wanted is not None else queryset


@admin.register(Generation)
class GenerationAdmin(ReadOnly, admin.ModelAdmin):
    # Few and narrow enough to fit a laptop's width beside the filters.
    list_display = ["id", "story", "user", "outcome", "model_name", "new_tokens"]
    list_display += ["waited", "ttft", "tokens_per_second", "took", "created"]
    list_filter = [GenerationOutcomeFilter, "status", "finish_reason", "model_name", "created_at"]
    list_filter += [("user", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "story__title"]
    list_select_related = ["story", "user"]
    date_hierarchy = "created_at"

    @admin.display(description="outcome", ordering="finish_reason")
    def outcome(self, obj):
        """The status while it runs, then how it ended; an error says what it was."""
        if obj.is_active:
            return obj.status
        if obj.finish_reason == "error" and obj.error_message:
            return f"error: {Truncator(obj.error_message).chars(80)}"
        return obj.finish_reason or obj.status

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return _moment(obj.created_at)

    @admin.display(description="waited")
    def waited(self, obj):
        """From the request to a worker taking it."""
        return _seconds(obj.created_at, obj.started_at)

    @admin.display(description="first token", ordering="ttft_ms")
    def ttft(self, obj):
        return f"{obj.ttft_ms / 1000:.2f} s" if obj.ttft_ms is not None else "-"

    @admin.display(description="tokens/s", ordering="tokens_per_s")
    def tokens_per_second(self, obj):
        return f"{obj.tokens_per_s:.1f}" if obj.tokens_per_s is not None else "-"

    @admin.display(description="took")
    def took(self, obj):
        """From a worker taking it to its end."""
        return _seconds(obj.started_at, obj.finished_at)


@admin.register(Preset)
class PresetAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "params", "order"]
    list_editable = ["order"]


class WorkerStateFilter(admin.SimpleListFilter):
    """A worker's reported state holds only while it reports; past that it is offline."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [*Worker.State.choices, ("offline", "Offline")]

    def queryset(self, request, queryset):
        alive = selectors.workers_alive()
        if self.value() == "offline":
            return queryset.exclude(pk__in=alive)
        if self.value() in Worker.State.values:
            return queryset.filter(pk__in=alive, state=self.value())
        return queryset


@admin.register(Worker)
class WorkerAdmin(ReadOnly, admin.ModelAdmin):
    """Read-only: each worker reports itself every few seconds."""

    # Few and narrow enough to fit a laptop's width beside the filters.
    list_display = ["name", "state_shown", "serving", "live_requests", "kv_cache_shown"]
    list_display += ["loading", "error", "last_report"]
    list_filter = [WorkerStateFilter, "config_name"]

    @admin.display(description="state", ordering="state")
    def state_shown(self, obj):
        return obj.state_shown

    @admin.display(description="serving", ordering="config_name")
    def serving(self, obj):
        """The configuration, its model, and how it runs."""
        if not obj.model_name:
            return "-"
        loaded = f", loaded in {obj.load_seconds:.1f} s" if obj.load_seconds is not None else ""
        return f"{obj.config_name}: {obj.model_name} ({obj.dtype}, {obj.device}{loaded})"

    @admin.display(description="KV cache (positions)")
    def kv_cache_shown(self, obj):
        """The prefix cache's use against its budget, what running generations hold, and
        the share of prompt tokens found cached."""
        cache = obj.kv_cache
        if not cache:
            return "-"
        budget, kept = cache["budget_tokens"], cache["cached_tokens"]
        prefix = f"{kept:,} of {budget:,} ({kept / budget:.0%})" if budget else "off"
        rate = obj.prefix_hit_rate
        found = "-" if rate is None else f"{rate:.0%} of {cache['prompt_tokens']:,}"
        return format_html("prefix cache: {}<br>held: {}<br>found: {}", prefix, f"{cache['held_tokens']:,}", found)

    @admin.display(description="last report", ordering="last_heartbeat")
    def last_report(self, obj):
        return _moment(obj.last_heartbeat)


def _seconds(start, end) -> str:
    return f"{(end - start).total_seconds():.1f} s" if start and end else "-"


def _moment(when) -> str:
    """A time as a list shows it: short, in the site's time zone, the year only when it is not this one."""
    if when is None:
        return "-"
    when, now = timezone.localtime(when), timezone.localtime()
    return date_format(when, "M j, H:i" if when.year == now.year else "M j Y, H:i")


@admin.register(UsageLimit)
class UsageLimitAdmin(admin.ModelAdmin):
    list_display = ["__str__", "concurrent_generations", "max_new_tokens", "tokens_per_day"]
    autocomplete_fields = ["user"]


@admin.register(WriterUsage)
class WriterUsageAdmin(ReadOnly, admin.ModelAdmin):
    """What each writer has used in the last 24 hours, against their limits."""

    def has_delete_permission(self, request, obj=None):
        return False  # these rows are the writers' accounts

    list_display = ["username", "running_now", "generations_24h", "tokens_24h", "limits"]
    search_fields = ["username"]

    def get_queryset(self, request):
        return selectors.writers_with_usage(super().get_queryset(request))

    @admin.display(description="tokens (24 h)", ordering="tokens_24h")
    def tokens_24h(self, obj):
        return obj.tokens_24h

    @admin.display(description="generations (24 h)", ordering="generations_24h")
    def generations_24h(self, obj):
        return obj.generations_24h

    @admin.display(description="running now", ordering="running_now")
    def running_now(self, obj):
        return obj.running_now

    @admin.display(description="limits")
    def limits(self, obj):
        limits = selectors.limits_for(obj)
        shown = {
            "at once": limits["concurrent_generations"],
            "per request": limits["max_new_tokens"],
            "tokens per 24 h": limits["tokens_per_day"],
        }
        return ", ".join(f"{name}: {'no limit' if value is None else f'{value:,}'}" for name, value in shown.items())


def _story_label(story) -> str:
    """Writers often share a title ("Whiskers"); the owner and id tell their stories apart."""
    return f"{story.title} ({story.owner.username}, story {story.pk}, {story.word_count:,} words)"


class _StoryChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        return _story_label(obj)


class _StoryPicker(AutocompleteSelectMultiple):
    """The admin's story search, asking TrainingJobAdmin's own view for labelled results."""

    url_name = "%s:generation_trainingjob_stories"


class _StorySearch(AutocompleteJsonView):
    def get_queryset(self):
        # Only what this staff member may train on: allowed by its writer, or their own.
        trainable = training_selectors.stories_trainable_by(self.request.user)
        return super().get_queryset().filter(pk__in=trainable.values("pk")).select_related("owner")

    def serialize_result(self, obj, to_field_name):
        return {"id": str(getattr(obj, to_field_name)), "text": _story_label(obj)}


class _Files(forms.ClearableFileInput):
    allow_multiple_selected = True


class _TextFiles(forms.FileField):
    """Any number of .txt files, each checked to be UTF-8 text: [(name, bytes)]."""

    def __init__(self, **kwargs):
        super().__init__(widget=_Files(attrs={"accept": ".txt,text/plain"}), **kwargs)

    def clean(self, data, initial=None):
        uploads = data if isinstance(data, list | tuple) else [data] if data else []
        files = []
        for upload in uploads:
            try:
                # By the size the upload says it has (Django keeps a large one on disk):
                # a file too large is refused before it is read into memory.
                size_checked(upload.name, upload.size)
                files.append((upload.name, upload.read()))
                read_text_file(*files[-1])
            except CorpusError as exc:
                raise forms.ValidationError(str(exc)) from None
        return files


class TrainingJobForm(forms.ModelForm):
    files = _TextFiles(required=False, help_text="Plain-text files (UTF-8), added to the chosen stories.")

    class Meta:
        model = TrainingJob
        fields = [
            "name",
            "base",
            "stories",
            "method",
            "steps",
            "learning_rate",
            "sequence_length",
            "batch_size",
            "time_limit_minutes",
            "heldout_percent",
            "eval_every",
            "lora_rank",
            "seed",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        running = selectors.model_config_active()
        if running.pk is None:
            # A fresh site runs an implicit default that is not a row yet. It is offered as
            # the empty choice and saved as a configuration only with the job: opening the
            # form writes nothing.
            base = self.fields["base"]
            base.required = False
            base.empty_label = f"{running.name}: {running.source} (what writers use now)"

    def clean(self):
        cleaned = super().clean()
        if "files" not in self.errors:
            try:
                training.training_job_check(stories=cleaned.get("stories"), files=cleaned.get("files"))
            except training.JobRefused as exc:
                raise forms.ValidationError(str(exc)) from None
        return cleaned


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    """A job is set up once, then runs: its page shows the progress live
    (templates/admin/generation/trainingjob/change_form.html, static/js/training.js)."""

    form = TrainingJobForm
    change_form_template = "admin/generation/trainingjob/change_form.html"
    # Few and narrow enough to fit a laptop's width beside the filters.
    list_display = ["name", "base", "method_short", "status", "progress", "perplexity", "result", "created"]
    list_filter = ["status", "method"]
    autocomplete_fields = ["stories"]
    list_select_related = ["base", "result"]
    fieldsets = [
        (None, {"fields": ["name", "base", "method"]}),
        ("Corpus", {"fields": ["stories", "files", "heldout_percent"]}),
        (
            "Bounds",
            {"fields": ["steps", "learning_rate", "sequence_length", "batch_size", "time_limit_minutes"]},
        ),
        ("More", {"fields": ["eval_every", "lora_rank", "seed"]}),
    ]
    shown_fieldsets = [
        (None, {"fields": ["name", "base", "method", "status", "stop_reason", "error_message", "result"]}),
        ("Corpus", {"fields": ["story_names", "file_names", "heldout_percent", "corpus"]}),
        ("Bounds", {"fields": ["steps", "learning_rate", "sequence_length", "batch_size", "time_limit_minutes"]}),
        ("More", {"fields": ["eval_every", "lora_rank", "seed", "output_dir", "created_by", "created_at"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        return self.shown_fieldsets if obj is not None else self.fieldsets

    def get_urls(self):
        search = self.admin_site.admin_view(_StorySearch.as_view(admin_site=self.admin_site))
        return [path("stories/", search, name="generation_trainingjob_stories"), *super().get_urls()]

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "stories":
            kwargs["widget"] = _StoryPicker(db_field, self.admin_site, using=kwargs.get("using"))
            kwargs["form_class"] = _StoryChoices
            kwargs["queryset"] = training_selectors.stories_trainable_by(request.user).select_related("owner")
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request):
        # The model writers use now is the one an operator most often wants to train.
        active = ModelConfig.objects.filter(is_active=True).first()
        return {"base": active.pk if active else None, **super().get_changeform_initial_data(request)}

    def has_change_permission(self, request, obj=None):
        # Set up once: a job that ran cannot be changed, only read (and cancelled).
        return obj is None and super().has_change_permission(request)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [f for fieldset in self.shown_fieldsets for f in fieldset[1]["fields"]]

    @admin.display(description="stories")
    def story_names(self, obj):
        return "; ".join(_story_label(story) for story in obj.stories.select_related("owner").order_by("pk")) or "none"

    @admin.display(description="files")
    def file_names(self, obj):
        return ", ".join(f.name for f in obj.files.all()) or "none"

    @admin.display(description="examples")
    def corpus(self, obj):
        return training_selectors.training_corpus_summary(obj)

    @admin.display(description="method", ordering="method")
    def method_short(self, obj):
        return {TrainingJob.Method.LORA: "LoRA"}.get(obj.method, obj.method)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return _moment(obj.created_at)

    @admin.display(description="step")
    def progress(self, obj):
        return f"{obj.step} / {obj.steps}"

    @admin.display(description="perplexity")
    def perplexity(self, obj):
        points = obj.evaluations
        if not points:
            return "-"
        return f"{points[0][2]:.1f} -> {points[-1][2]:.1f}" if len(points) > 1 else f"{points[0][2]:.1f}"

    def save_form(self, request, form, change):
        """The job, created (with its stories and files) and queued by the service; the
        admin's message, history entry and redirect then name it."""
        data = form.cleaned_data
        bounds = {name: data[name] for name in TrainingJobForm.Meta.fields if name not in ("name", "base", "stories")}
        job = training.training_job_create(
            name=data["name"],
            base=data["base"],  # None: the implicit default, offered as the empty choice
            stories=data["stories"],
            files=data["files"] or [],
            user=request.user,
            **bounds,
        )
        training.training_job_queue(job)
        return job

    def save_model(self, request, obj, form, change):
        pass  # save_form created it

    def save_related(self, request, form, formsets, change):
        pass  # save_form created it with its stories and files
