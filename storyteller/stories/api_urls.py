from django.urls import path

from storyteller.stories import api

urlpatterns = [
    path("stories/", api.stories, name="api-stories"),
    path("stories/import", api.story_import, name="api-story-import"),
    path("stories/<int:story_id>/", api.story, name="api-story"),
    path("stories/<int:story_id>/export", api.story_export, name="api-story-export"),
]
