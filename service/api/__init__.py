"""The REST API of ``headspec serve``: ``create_app()`` in ``app.py``; one router per
resource in ``routes_*.py``; shared dependencies in ``deps.py``; tokens in ``auth.py``;
request and response models in ``schemas.py``; errors mapped in ``errors.py``."""
