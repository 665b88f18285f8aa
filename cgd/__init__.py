"""Critique-guided distillation: the domain library (no FastAPI, no Celery imports)."""

__version__ = "0.1.0"
