from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Connects the worker start-up to Celery; it loads nothing of the worker until then.
        from generation.worker import supervisor  # noqa: F401
