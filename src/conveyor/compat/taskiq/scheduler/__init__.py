"""``taskiq.scheduler``: ``scheduler``, ``scheduled_task`` and ``created_schedule``."""

__all__: list[str] = []
