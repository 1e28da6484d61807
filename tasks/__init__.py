"""Celery side of mailscan: the app, the scan tasks, the plugins. ``celery -A tasks`` finds
``app`` here."""

from tasks.celeryapp import app

__all__ = ["app"]
