from django.urls import path

from generation import api

urlpatterns = [
    path("stories/<int:story_id>/generations/", api.generations, name="api-generations"),
    path("stories/<int:story_id>/generations/<int:generation_id>/", api.generation, name="api-generation"),
]
