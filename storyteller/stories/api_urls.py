from django.urls import path

from storyteller.stories import api

urlpatterns = [
    path("stories/", api.stories, name="api-stories"),
    path("stories/import", api.story_import, name="api-story-import"),
    path("stories/<int:story_id>/", api.story, name="api-story"),
    path("stories/<int:story_id>/restore", api.story_restore, name="api-story-restore"),
    path("stories/<int:story_id>/export", api.story_export, name="api-story-export"),
    path("stories/<int:story_id>/revisions/", api.revisions, name="api-revisions"),
    path("stories/<int:story_id>/revisions/<int:number>/", api.revision, name="api-revision"),
    path("stories/<int:story_id>/revisions/<int:number>/restore", api.revision_restore, name="api-revision-restore"),
    path("stories/<int:story_id>/share", api.share, name="api-share"),
    path("stories/<int:story_id>/lore/", api.lore, name="api-lore"),
    path("stories/<int:story_id>/lore/<int:entry_id>/", api.lore_entry, name="api-lore-entry"),
    path("stories/<int:story_id>/tree/", api.tree, name="api-tree"),
    path("stories/<int:story_id>/tree/current", api.tree_current, name="api-tree-current"),
    path("stories/<int:story_id>/tree/<int:node_id>/", api.tree_node, name="api-tree-node"),
    path("stories/<int:story_id>/context", api.story_context, name="api-story-context"),
]
