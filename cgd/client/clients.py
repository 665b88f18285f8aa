"""The typed clients: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio), one
resource per endpoint group, the same methods on both."""

from __future__ import annotations

from typing import Any

from cgd.client.async_resources import (
    AsyncDatasets,
    AsyncExperiments,
    AsyncJobs,
    AsyncRuns,
    AsyncSnapshots,
    AsyncTemplates,
)
from cgd.client.base import AsyncBaseClient, BaseClient
from cgd.client.resources import Datasets, Experiments, Jobs, Runs, Snapshots, Templates

__all__ = ["AsyncClient", "Client"]


class Client(BaseClient):
    """The cgd REST API. ``api_url``/``api_key`` default to ``CGD_API_URL``/``CGD_API_KEY``.

    ``client.datasets``, ``client.jobs``, ``client.snapshots``, ``client.runs``,
    ``client.templates``, ``client.experiments``: each method returns the server's own response
    model; a list call returns a page that iterates across all pages; an error answer raises
    the exception for its status (:mod:`cgd.client.errors`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.datasets = Datasets(self)
        self.jobs = Jobs(self)
        self.snapshots = Snapshots(self)
        self.runs = Runs(self)
        self.templates = Templates(self)
        self.experiments = Experiments(self)

    def __enter__(self) -> Client:
        return self

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: the API process is up."""
        return dict(self._json("GET", "/healthz"))

    def ready(self) -> dict[str, Any]:
        """``GET /readyz``: a 503 answer is returned, not raised: it is what was asked."""
        return dict(self._send("GET", "/readyz", ok_statuses=(503,)).json())


class AsyncClient(AsyncBaseClient):
    """The asyncio twin of :class:`Client`: the same resources and methods, awaited."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.datasets = AsyncDatasets(self)
        self.jobs = AsyncJobs(self)
        self.snapshots = AsyncSnapshots(self)
        self.runs = AsyncRuns(self)
        self.templates = AsyncTemplates(self)
        self.experiments = AsyncExperiments(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def health(self) -> dict[str, Any]:
        return dict(await self._json("GET", "/healthz"))

    async def ready(self) -> dict[str, Any]:
        return dict((await self._send("GET", "/readyz", ok_statuses=(503,))).json())
