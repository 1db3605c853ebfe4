from django.urls import path

from storyteller.stories import views

app_name = "stories"

urlpatterns = [
    path("", views.library, name="library"),
    path("<int:story_id>/", views.editor, name="editor"),
]
