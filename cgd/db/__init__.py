"""Database layer: typed SQLAlchemy 2 models, engine/session helpers, bulk loading."""
