"""``taskiq.depends``: dependencies taskiq ships (``progress_tracker``)."""

__all__: list[str] = []
