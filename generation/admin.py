from django.contrib import admin
from django.db import transaction

from generation.models import Generation, ModelConfig


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
        # Activating one configuration deactivates the others in the same transaction.
        with transaction.atomic():
            if obj.is_active:
                ModelConfig.objects.exclude(pk=obj.pk).filter(is_active=True).update(is_active=False)
            super().save_model(request, obj, form, change)

    @admin.action(description="Make the selected configuration the active one")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one configuration to activate.", level="error")
            return
        with transaction.atomic():
            ModelConfig.objects.filter(is_active=True).update(is_active=False)
            queryset.update(is_active=True)
        self.message_user(request, f"{queryset.first().name} is now the active model.")


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
