from django.apps import AppConfig


class StoriesConfig(AppConfig):
    name = "storyteller.stories"
    label = "stories"
