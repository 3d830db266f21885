"""syncplatform: keeps a shop's catalog in step with its ERP systems."""

from .celery import app as celery_app

__all__ = ("celery_app",)
