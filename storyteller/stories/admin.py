from django.contrib import admin

from storyteller.stories.models import Revision, Story


@admin.register(Story)
class StoryAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "revision", "updated_at"]
    list_filter = ["updated_at"]
    search_fields = ["title", "owner__username"]
    readonly_fields = ["revision", "created_at", "updated_at"]


@admin.register(Revision)
class RevisionAdmin(admin.ModelAdmin):
    list_display = ["story", "number", "created_at"]
    readonly_fields = ["story", "number", "title", "text", "created_at"]
