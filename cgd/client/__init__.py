"""A Python client for the cgd REST API (v1), typed and in two flavours with the same methods.

```python
from cgd.client import Client, NotFound

with Client() as client:  # CGD_API_URL, CGD_API_KEY
    ds = client.datasets.create("gsm8k_train.jsonl", name="gsm8k")      # → DatasetOut
    job = client.jobs.create({"dataset_id": str(ds.id), "student": {...}, "teacher": {...}})
    status = client.jobs.wait(job.id)                                     # → JobStatusOut
    for t in client.jobs.triplets(job.id, refined_correct=True):          # every page
        print(t.critique)
```

:class:`AsyncClient` has the same resources and methods, awaited. Responses are the server's own
pydantic models (``cgd/*/schemas.py``); lists are pages that iterate across pages
(:mod:`cgd.client.pages`); every error answer raises the exception for its status
(:mod:`cgd.client.errors`: ``NotFound``, ``Conflict``, ``ValidationFailed``, ``RateLimited``
with ``retry_after``, …, all :class:`CgdApiError`). Transport and retries:
:mod:`cgd.client.base`. ``CgdClient`` (:mod:`cgd.client.legacy`) answers in plain dicts, for
scripts written against it. Install with ``pip install 'cgd[client]'``.
"""

from cgd.client.base import DEFAULT_API_URL
from cgd.client.clients import AsyncClient, Client
from cgd.client.errors import (
    BadRequest,
    CgdApiError,
    CgdConnectionError,
    Conflict,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
    format_detail,
)
from cgd.client.legacy import TERMINAL_STATUSES, CgdClient, Page
from cgd.client.pages import AsyncPage, SyncPage
from cgd.client.transfer import ExportResult

__all__ = [
    "DEFAULT_API_URL",
    "TERMINAL_STATUSES",
    "AsyncClient",
    "AsyncPage",
    "BadRequest",
    "CgdApiError",
    "CgdClient",
    "CgdConnectionError",
    "Client",
    "Conflict",
    "ExportResult",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "SyncPage",
    "Unauthorized",
    "ValidationFailed",
    "format_detail",
]
