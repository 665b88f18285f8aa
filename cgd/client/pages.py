"""Pages of a listing that iterate across pages: ``for job in client.jobs.list(): ...``.

A page holds one answer of a list endpoint (``data`` as typed models, ``next_cursor``);
iterating it yields its items and then fetches and yields the following pages, following
``next_cursor`` until the last page. ``iter_pages()`` yields whole pages instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

__all__ = ["AsyncPage", "SyncPage"]

T = TypeVar("T", bound=BaseModel)


def _parse(model: type[T], body: Any) -> tuple[list[T], str | None]:
    return [model.model_validate(row) for row in body["data"]], body.get("next_cursor")


class SyncPage(Generic[T]):
    """One page (``data``, ``next_cursor``); iterating it walks every following page too."""

    def __init__(self, model: type[T], body: Any, fetch: Callable[[str], Any]) -> None:
        self.data, self.next_cursor = _parse(model, body)
        self._model = model
        self._fetch = fetch  # cursor → the next page's JSON body

    def has_next_page(self) -> bool:
        return bool(self.next_cursor)

    def next_page(self) -> SyncPage[T]:
        if not self.next_cursor:
            raise RuntimeError("this is the last page")
        return SyncPage(self._model, self._fetch(self.next_cursor), self._fetch)

    def iter_pages(self) -> Iterator[SyncPage[T]]:
        page: SyncPage[T] = self
        yield page
        while page.has_next_page():
            page = page.next_page()
            yield page

    def __iter__(self) -> Iterator[T]:
        for page in self.iter_pages():
            yield from page.data

    def __repr__(self) -> str:
        return (
            f"SyncPage({len(self.data)} {self._model.__name__}, next_cursor={self.next_cursor!r})"
        )


class AsyncPage(Generic[T]):
    """The asyncio twin: ``async for item in await client.jobs.list(): ...``."""

    def __init__(self, model: type[T], body: Any, fetch: Callable[[str], Awaitable[Any]]) -> None:
        self.data, self.next_cursor = _parse(model, body)
        self._model = model
        self._fetch = fetch

    def has_next_page(self) -> bool:
        return bool(self.next_cursor)

    async def next_page(self) -> AsyncPage[T]:
        if not self.next_cursor:
            raise RuntimeError("this is the last page")
        return AsyncPage(self._model, await self._fetch(self.next_cursor), self._fetch)

    async def iter_pages(self) -> AsyncIterator[AsyncPage[T]]:
        page: AsyncPage[T] = self
        yield page
        while page.has_next_page():
            page = await page.next_page()
            yield page

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.iter_pages():
            for item in page.data:
                yield item

    def __repr__(self) -> str:
        return (
            f"AsyncPage({len(self.data)} {self._model.__name__}, next_cursor={self.next_cursor!r})"
        )
