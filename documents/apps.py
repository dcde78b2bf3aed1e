from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "documents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from documents import checks, signals, tasks  # noqa: F401  (system checks; file removal; the Celery task)
