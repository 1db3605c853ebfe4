from django.contrib import admin

from storyteller.stories.models import LoreEntry, Revision, Story


class LoreEntryInline(admin.TabularInline):
    model = LoreEntry
    extra = 0


@admin.register(Story)
class StoryAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "revision", "updated_at", "deleted_at"]
    list_filter = ["updated_at", "deleted_at"]
    search_fields = ["title", "owner__username"]
    readonly_fields = ["revision", "share_token", "created_at", "updated_at"]
    inlines = [LoreEntryInline]


@admin.register(Revision)
class RevisionAdmin(admin.ModelAdmin):
    list_display = ["story", "number", "created_at"]
    readonly_fields = ["story", "number", "title", "text", "created_at"]
