from django.contrib import admin

from generation import services
from generation.models import Generation, ModelConfig, Preset, Worker


@admin.register(ModelConfig)
class ModelConfigAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "dtype", "device", "is_active", "updated_at"]
    list_filter = ["is_active"]
    actions = ["activate"]
    fieldsets = [
        (None, {"fields": ["name", "source", "dtype", "device", "context_window", "is_active"]}),
        ("Default sampling", {"fields": ["max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty"]}),
    ]

    readonly_fields = ["workers"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        return [*fieldsets, ("Workers", {"fields": ["workers"]})] if obj is not None else fieldsets

    @admin.display(description="What each worker runs")
    def workers(self, obj):
        """Where the switch to this configuration stands, worker by worker."""
        lines = []
        for worker in Worker.objects.all():
            if not worker.is_alive:
                continue
            if worker.config_name == obj.name:
                lines.append(f"{worker.name}: serving {worker.model_name} ({worker.dtype}, {worker.device})")
            elif worker.loading == obj.name:
                lines.append(f"{worker.name}: loading it; {worker.model_name or 'nothing'} serves meanwhile")
            elif worker.error.startswith(f"{obj.name}: "):
                lines.append(f"{worker.name}: could not load it ({worker.error}); {worker.model_name} serves")
            else:
                lines.append(f"{worker.name}: serving {worker.config_name or 'nothing'}")
        return "\n".join(lines) or "No worker has reported in the last 30 s."

    def save_model(self, request, obj, form, change):
        services.model_config_save(obj)

    @admin.action(description="Make the selected configuration the active one")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one configuration to activate.", level="error")
            return
        config = services.model_config_activate(queryset.get())
        self.message_user(request, f"{config.name} is now the active model.")


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = ["id", "story", "user", "status", "finish_reason", "model_name", "new_tokens", "created_at"]
    list_filter = ["status", "finish_reason", "model_name", "created_at"]
    search_fields = ["user__username", "story__title"]
    list_select_related = ["story", "user"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Preset)
class PresetAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "params", "order"]
    list_editable = ["order"]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Read-only: each worker reports itself every few seconds."""

    list_display = ["name", "alive", "state", "config_name", "model_name", "dtype", "device"]
    list_display += ["load_seconds", "live_requests", "loading", "error", "last_heartbeat"]
    list_filter = ["state", "config_name"]

    @admin.display(boolean=True, description="alive")
    def alive(self, obj):
        return obj.is_alive

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
