from django.urls import path

from storyteller.stories import views

app_name = "stories"

urlpatterns = [
    path("", views.library, name="library"),
    path("trash/", views.trash_list, name="trash"),
    path("import/", views.import_story, name="import"),
    path("<int:story_id>/", views.editor, name="editor"),
    path("<int:story_id>/rename/", views.rename, name="rename"),
    path("<int:story_id>/trash/", views.trash, name="trash-story"),
    path("<int:story_id>/restore/", views.restore, name="restore"),
]
