from django.contrib import admin

from generation import services
from generation.models import Generation, ModelConfig, Preset


@admin.register(ModelConfig)
class ModelConfigAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "dtype", "device", "is_active", "updated_at"]
    list_filter = ["is_active"]
    actions = ["activate"]
    fieldsets = [
        (None, {"fields": ["name", "source", "dtype", "device", "context_window", "is_active"]}),
        ("Default sampling", {"fields": ["max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty"]}),
    ]

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
