"""Page/page_size pagination and the `pagination` block of list responses."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Annotated, Generic, Literal, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

T = TypeVar("T")

MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class PageParams:
    page: int
    page_size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


async def _page_params(
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
) -> PageParams:
    return PageParams(page=page, page_size=page_size)


PageDep = Annotated[PageParams, Depends(_page_params)]
SortOrder = Literal["asc", "desc"]


class Pagination(BaseModel):
    page: int
    page_size: int
    total_items: int
    total_pages: int
    has_next: bool
    has_previous: bool

    @classmethod
    def of(cls, params: PageParams, total: int) -> Pagination:
        pages = ceil(total / params.page_size) if total else 0
        return cls(
            page=params.page,
            page_size=params.page_size,
            total_items=total,
            total_pages=pages,
            has_next=params.page < pages,
            has_previous=params.page > 1,
        )


class Page(BaseModel, Generic[T]):
    items: list[T]
    pagination: Pagination
