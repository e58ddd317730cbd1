"""The bare ceiling: FastAPI with one statement per request, no auth, no middleware.

It answers the same paths as OpsFlow so the same load scripts drive both, each doing the
least the operation could do: one INSERT, one SELECT by key, one SELECT ... LIMIT 20, one
UPDATE, one SELECT of a user row. PostgreSQL through an asyncpg pool (DATABASE_URL set,
`postgresql://...`) or SQLite through aiosqlite (CEILING_SQLITE_PATH).

    CEILING_DATABASE_URL=postgresql://postgres@127.0.0.1/bench \
        uvicorn --factory ceiling_app:create_app --port 8001
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ceiling_tasks (id TEXT PRIMARY KEY, title TEXT NOT NULL,"
    " task_type TEXT NOT NULL, priority TEXT NOT NULL, status TEXT NOT NULL,"
    " created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ceiling_users (id TEXT PRIMARY KEY, username TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_ceiling_tasks_created ON ceiling_tasks (created_at)",
)
USER_ID = "00000000-0000-0000-0000-000000000001"


class NewTask(BaseModel):
    title: str
    task_type: str = "TASK"
    priority: str = "MEDIUM"


class Database:
    """One statement per call, on asyncpg or aiosqlite (`$n` placeholders are rewritten)."""

    def __init__(self) -> None:
        self.pg_url = os.environ.get("CEILING_DATABASE_URL", "")
        self.sqlite_path = os.environ.get("CEILING_SQLITE_PATH", "ceiling.db")
        self.pool: Any = None
        self.sqlite: Any = None
        # One aiosqlite connection: statements and commits must not interleave.
        self.lock = asyncio.Lock()

    async def open(self) -> None:
        if self.pg_url:
            import asyncpg

            self.pool = await asyncpg.create_pool(self.pg_url, min_size=5, max_size=20)
        else:
            import aiosqlite

            self.sqlite = await aiosqlite.connect(self.sqlite_path)
            await self.sqlite.execute("PRAGMA journal_mode=WAL")
            await self.sqlite.execute("PRAGMA synchronous=NORMAL")
        for statement in SCHEMA:
            await self.execute(statement)
        await self.execute(
            "INSERT INTO ceiling_users (id, username) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            USER_ID,
            "admin",
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.sqlite is not None:
            await self.sqlite.close()

    def _sqlite(self, sql: str) -> str:
        for index in range(9, 0, -1):
            sql = sql.replace(f"${index}", "?")
        return sql

    async def execute(self, sql: str, *args: Any) -> None:
        if self.pool is not None:
            await self.pool.execute(sql, *args)
            return
        async with self.lock:
            await self.sqlite.execute(self._sqlite(sql), args)
            await self.sqlite.commit()

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if self.pool is not None:
            return [dict(row) for row in await self.pool.fetch(sql, *args)]
        async with self.lock:
            cursor = await self.sqlite.execute(self._sqlite(sql), args)
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]
            if sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
                await self.sqlite.commit()
        return rows


def create_app() -> FastAPI:
    database = Database()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await database.open()
        yield
        await database.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/v1/tasks", status_code=201)
    async def create(task: NewTask) -> dict[str, Any]:
        rows = await database.fetch(
            "INSERT INTO ceiling_tasks (id, title, task_type, priority, status, created_at)"
            " VALUES ($1, $2, $3, $4, 'TODO', $5) RETURNING *",
            str(uuid.uuid4()),
            task.title,
            task.task_type,
            task.priority,
            datetime.now(UTC).isoformat(),
        )
        return rows[0]

    @app.get("/api/v1/tasks/{task_id}")
    async def get(task_id: str) -> dict[str, Any]:
        rows = await database.fetch("SELECT * FROM ceiling_tasks WHERE id = $1", task_id)
        if not rows:
            raise HTTPException(404)
        return rows[0]

    @app.get("/api/v1/tasks")
    async def listing(page_size: int = 20) -> dict[str, Any]:
        rows = await database.fetch(
            "SELECT * FROM ceiling_tasks ORDER BY created_at DESC LIMIT $1", page_size
        )
        return {"items": rows}

    @app.patch("/api/v1/tasks/{task_id}/{action}")
    async def change(task_id: str, action: str) -> dict[str, Any]:
        status = {"start": "IN_PROGRESS", "complete": "COMPLETED"}.get(action)
        if status is None:
            raise HTTPException(404)
        rows = await database.fetch(
            "UPDATE ceiling_tasks SET status = $1 WHERE id = $2 RETURNING *", status, task_id
        )
        if not rows:
            raise HTTPException(404)
        return rows[0]

    @app.get("/api/v1/auth/me")
    async def me() -> dict[str, Any]:
        return (await database.fetch("SELECT * FROM ceiling_users WHERE id = $1", USER_ID))[0]

    return app
