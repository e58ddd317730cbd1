"""Attachments and resumable uploads, on the local directory and on a real S3 API server
(moto's standalone server on loopback): the same tests run on both backends."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from opsflow.app import create_app
from opsflow.clock import SettableClock
from opsflow.composition import build_context, engine_registry
from opsflow.config import Settings
from opsflow.context import AppContext
from opsflow.models.attachment import Attachment, Upload
from opsflow.models.audit import AuditLog
from opsflow.models.outbox import OutboxEvent
from tests.conftest import assert_error, make_settings
from tests.factories import ADMIN_PASSWORD, login, make_task, make_user
from tests.processes import s3_server

MiB = 1024 * 1024
Headers = dict[str, str]


def deterministic_bytes(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with s3_server(tmp_path_factory.mktemp("s3")) as endpoint:
        yield endpoint


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
    )


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> Settings:
    overrides: dict[str, Any] = {"data_dir": tmp_path / "data"}
    if backend == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"opsflow-{uuid.uuid4().hex[:12]}"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        overrides |= {
            "storage": "s3",
            "s3_endpoint_url": endpoint,
            "s3_bucket": bucket,
            "s3_access_key_id": "test-key",
            "s3_secret_access_key": "test-secret",
        }
    return make_settings(database_url, **overrides)


def stored_objects(settings: Settings) -> list[str]:
    """Every file or object the storage holds (finished or partial)."""
    if settings.storage == "s3":
        client = s3_client(str(settings.s3_endpoint_url))
        listed = client.list_objects_v2(Bucket=settings.s3_bucket).get("Contents", [])
        parts = client.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads", [])
        return [o["Key"] for o in listed] + [f"multipart:{u['Key']}" for u in parts]
    root = settings.files_dir
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def count(ctx: AppContext, model: Any) -> int:
    async with ctx.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def begin(
    client: httpx.AsyncClient, headers: Headers, task_id: str, data: bytes, **fields: Any
) -> httpx.Response:
    body = {
        "task_id": task_id,
        "filename": "big.log",
        "size": len(data),
        "sha256": sha(data),
        "chunk_size": 5 * MiB,
        **fields,
    }
    return await client.post("/uploads", json=body, headers=headers)


async def put(
    client: httpx.AsyncClient, headers: Headers, upload_id: str, number: int, data: bytes
) -> httpx.Response:
    return await client.put(
        f"/uploads/{upload_id}/chunks/{number}",
        content=data,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )


async def test_fifty_mib_in_five_mib_chunks(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext, settings: Settings
) -> None:
    data = deterministic_bytes(50 * MiB)
    chunk = 5 * MiB
    task = await make_task(client, admin_headers)
    started = await begin(client, admin_headers, task["id"], data)
    assert started.status_code == 201, started.text
    upload = started.json()
    assert upload["total_chunks"] == 10
    assert upload["missing_chunks"] == list(range(10))
    assert upload["expires_at"]
    upload_id = upload["upload_id"]

    # Two chunks sent twice, chunk 7 left out.
    for number in [0, 1, 2, 3, 2, 4, 5, 6, 4, 8, 9]:
        answer = await put(client, admin_headers, upload_id, number, data[number * chunk :][:chunk])
        assert answer.status_code == 200, answer.text
    status = (await client.get(f"/uploads/{upload_id}", headers=admin_headers)).json()
    assert status["missing_chunks"] == [7]
    assert status["received"] == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert status["received_bytes"] == 45 * MiB
    assert status["percentage"] == 90.0
    assert status["state"] == "open"

    early = await client.post(f"/uploads/{upload_id}/complete", headers=admin_headers)
    assert assert_error(early, 409, "CONFLICT")["missing_chunks"] == [7]

    last = await put(client, admin_headers, upload_id, 7, data[7 * chunk :][:chunk])
    assert last.json()["percentage"] == 100.0
    done = await client.post(f"/uploads/{upload_id}/complete", headers=admin_headers)
    assert done.status_code == 200, done.text
    attachment = done.json()
    assert attachment["sha256"] == sha(data)
    assert attachment["size"] == len(data)
    assert attachment["filename"] == "big.log"
    assert attachment["task_id"] == task["id"]
    again = await client.post(f"/uploads/{upload_id}/complete", headers=admin_headers)
    assert again.status_code == 200
    assert again.json()["id"] == attachment["id"]
    finished = (await client.get(f"/uploads/{upload_id}", headers=admin_headers)).json()
    assert finished["state"] == "completed"
    assert finished["attachment_id"] == attachment["id"]

    download = await client.get(f"/attachments/{attachment['id']}", headers=admin_headers)
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["accept-ranges"] == "bytes"

    ranged = await client.get(
        f"/attachments/{attachment['id']}",
        headers={**admin_headers, "Range": "bytes=10485000-10486999"},
    )
    assert ranged.status_code == 206
    assert ranged.content == data[10485000:10487000]
    assert ranged.headers["content-range"] == f"bytes 10485000-10486999/{len(data)}"
    tail = await client.get(
        f"/attachments/{attachment['id']}", headers={**admin_headers, "Range": "bytes=-100"}
    )
    assert tail.status_code == 206
    assert tail.content == data[-100:]
    outside = await client.get(
        f"/attachments/{attachment['id']}",
        headers={**admin_headers, "Range": f"bytes={len(data)}-"},
    )
    assert_error(outside, 416, "RANGE_NOT_SATISFIABLE")
    assert outside.headers["content-range"] == f"bytes */{len(data)}"

    # Nothing but the finished file is left in storage.
    assert len(stored_objects(settings)) == 1
    listed = await client.get(f"/tasks/{task['id']}/attachments", headers=admin_headers)
    assert [a["id"] for a in listed.json()["items"]] == [attachment["id"]]


async def test_a_wrong_sha256_answers_422_and_attaches_nothing(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext, settings: Settings
) -> None:
    data = deterministic_bytes(6 * MiB, seed=3)
    task = await make_task(client, admin_headers)
    started = await begin(client, admin_headers, task["id"], data, sha256="0" * 64)
    upload_id = started.json()["upload_id"]
    for number in (0, 1):
        answer = await put(
            client, admin_headers, upload_id, number, data[number * 5 * MiB :][: 5 * MiB]
        )
        assert answer.status_code == 200, answer.text
    failed = await client.post(f"/uploads/{upload_id}/complete", headers=admin_headers)
    error = assert_error(failed, 422, "CHECKSUM_MISMATCH")
    assert error["actual_sha256"] == sha(data)
    assert await count(app_context, Attachment) == 0
    assert stored_objects(settings) == []
    status = (await client.get(f"/uploads/{upload_id}", headers=admin_headers)).json()
    assert status["state"] == "failed"
    assert status["attachment_id"] is None
    more = await put(client, admin_headers, upload_id, 0, data[: 5 * MiB])
    assert_error(more, 409, "CONFLICT")
    listed = await client.get(f"/tasks/{task['id']}/attachments", headers=admin_headers)
    assert listed.json()["items"] == []


async def attach(
    client: httpx.AsyncClient,
    headers: Headers,
    task_id: str,
    name: str,
    content: bytes,
    mime: str = "application/octet-stream",
) -> httpx.Response:
    return await client.post(
        f"/tasks/{task_id}/attachments", files={"file": (name, content, mime)}, headers=headers
    )


async def attach_raw(
    client: httpx.AsyncClient, headers: Headers, task_id: str, name: str, content: bytes
) -> httpx.Response:
    """A multipart body written by hand: the file name goes out byte for byte (httpx would
    percent-encode control characters)."""
    boundary = "opsflow-test-boundary"
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="'
        + name.encode()
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return await client.post(
        f"/tasks/{task_id}/attachments",
        content=body,
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


PNG = b"\x89PNG\r\n\x1a\n" + deterministic_bytes(2000)


async def test_attach_download_and_delete(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext, settings: Settings
) -> None:
    task = await make_task(client, admin_headers)
    support = await make_user(client, admin_headers, "support")
    viewer = await make_user(client, admin_headers, "viewer")
    created = await attach(client, support.headers, task["id"], "notes.txt", PNG, "text/plain")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["content_type"] == "image/png"  # from the content, not the name
    assert body["size"] == len(PNG)
    assert body["sha256"] == sha(PNG)
    assert body["filename"] == "notes.txt"
    assert body["uploaded_by"] == support.id

    download = await client.get(
        body["download_url"].removeprefix("/api/v1"), headers=viewer.headers
    )
    assert download.status_code == 200
    assert download.content == PNG
    assert download.headers["content-type"] == "image/png"
    assert download.headers["etag"] == f'"{sha(PNG)}"'

    refused = await attach(client, viewer.headers, task["id"], "x.txt", b"hello")
    assert_error(refused, 403, "FORBIDDEN")
    other = await make_user(client, admin_headers, "developer")
    not_theirs = await client.delete(f"/attachments/{body['id']}", headers=other.headers)
    assert_error(not_theirs, 403, "FORBIDDEN")

    deleted = await client.delete(f"/attachments/{body['id']}", headers=support.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/attachments/{body['id']}", headers=admin_headers)
    assert_error(gone, 404, "NOT_FOUND")
    assert_error(
        await client.delete(f"/attachments/{body['id']}", headers=support.headers), 404, "NOT_FOUND"
    )

    async with app_context.sessions() as session:
        events = list(
            await session.scalars(
                select(OutboxEvent.event_type).where(OutboxEvent.aggregate_type == "attachment")
            )
        )
        actions = list(
            await session.scalars(
                select(AuditLog.action).where(AuditLog.entity_type == "attachment")
            )
        )
    assert sorted(events) == ["attachment.created", "attachment.deleted"]
    assert sorted(actions) == ["ATTACHMENT_CREATED", "ATTACHMENT_DELETED"]

    # The bytes stay until the collector has run, then they are gone.
    assert len(stored_objects(settings)) == 1
    report = await engine_registry(settings).get("uploads").run(app_context, batch=10)
    assert report.counts["attachments_purged"] == 1
    assert stored_objects(settings) == []


@pytest.mark.parametrize(
    ("content", "detected", "served"),
    [
        (
            b"<!DOCTYPE html><html><script>alert(1)</script></html>",
            "text/html",
            "application/octet-stream",
        ),
        (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
            "image/svg+xml",
            "application/octet-stream",
        ),
        (b"plain words\n", "text/plain", "text/plain; charset=utf-8"),
    ],
)
async def test_active_content_is_never_served_inline(
    client: httpx.AsyncClient,
    admin_headers: Headers,
    content: bytes,
    detected: str,
    served: str,
) -> None:
    task = await make_task(client, admin_headers)
    created = await attach(client, admin_headers, task["id"], "picture.png", content, "image/png")
    assert created.status_code == 201, created.text
    assert created.json()["content_type"] == detected
    download = await client.get(f"/attachments/{created.json()['id']}", headers=admin_headers)
    assert download.headers["content-type"] == served
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"picture.png\"; filename*=UTF-8''picture.png"
    )
    assert download.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in download.headers["content-security-policy"]


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "..",
        "a/b.txt",
        "bad\x00name.txt",
        "line\nbreak.txt",
        "rtl\u202etxt.exe",
        "  ",
    ],
)
async def test_hostile_file_names_write_nothing(
    client: httpx.AsyncClient,
    admin_headers: Headers,
    app_context: AppContext,
    settings: Settings,
    name: str,
) -> None:
    task = await make_task(client, admin_headers)
    answer = await attach_raw(client, admin_headers, task["id"], name, b"data")
    assert_error(answer, 400, "VALIDATION_ERROR")
    started = await begin(client, admin_headers, task["id"], b"data", filename=name)
    assert_error(started, 400, "VALIDATION_ERROR")
    assert await count(app_context, Attachment) == 0
    assert await count(app_context, Upload) == 0
    assert stored_objects(settings) == []


async def test_a_windows_path_keeps_only_its_last_part(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    """A multipart file name is reduced to its last part by the form parser (old browsers
    send the full path); a declared upload name with a path is refused."""
    task = await make_task(client, admin_headers)
    answer = await attach(client, admin_headers, task["id"], "C:\\temp\\x.txt", b"data")
    assert answer.status_code == 201, answer.text
    assert answer.json()["filename"] == "x.txt"
    started = await begin(client, admin_headers, task["id"], b"data", filename="C:\\temp\\x.txt")
    assert_error(started, 400, "VALIDATION_ERROR")
    assert await count(app_context, Upload) == 0


async def test_hostile_upload_requests(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext, settings: Settings
) -> None:
    task = await make_task(client, admin_headers)
    too_big = await begin(client, admin_headers, task["id"], b"x", size=2 * 1024 * MiB + 1)
    assert_error(too_big, 400, "VALIDATION_ERROR")
    small_chunks = await begin(client, admin_headers, task["id"], b"x", chunk_size=MiB)
    assert_error(small_chunks, 400, "VALIDATION_ERROR")
    huge_chunks = await begin(client, admin_headers, task["id"], b"x", chunk_size=1024 * MiB)
    assert_error(huge_chunks, 400, "VALIDATION_ERROR")
    no_task = await begin(client, admin_headers, str(uuid.uuid4()), b"x")
    assert_error(no_task, 404, "NOT_FOUND")
    assert await count(app_context, Upload) == 0

    data = deterministic_bytes(6 * MiB, seed=11)
    upload_id = (await begin(client, admin_headers, task["id"], data)).json()["upload_id"]
    for number in (2, 99, 1_000_001):
        answer = await put(client, admin_headers, upload_id, number, data[:10])
        assert_error(answer, 400, "VALIDATION_ERROR")
    assert_error(await put(client, admin_headers, upload_id, -1, b"x"), 400, "VALIDATION_ERROR")
    short = await put(client, admin_headers, upload_id, 0, data[:1000])
    assert_error(short, 400, "VALIDATION_ERROR")
    wrong_last = await put(client, admin_headers, upload_id, 1, data[: 2 * MiB])
    assert_error(wrong_last, 400, "VALIDATION_ERROR")
    oversize = await put(client, admin_headers, upload_id, 0, data[: 5 * MiB] + b"extra")
    assert_error(oversize, 400, "VALIDATION_ERROR")
    status = (await client.get(f"/uploads/{upload_id}", headers=admin_headers)).json()
    assert status["received"] == []
    assert [o for o in stored_objects(settings) if not o.startswith("multipart:")] == []

    # Somebody else's upload is not theirs to see or feed.
    stranger = await make_user(client, admin_headers, "developer")
    assert_error(
        await client.get(f"/uploads/{upload_id}", headers=stranger.headers), 404, "NOT_FOUND"
    )
    assert_error(
        await put(client, stranger.headers, upload_id, 1, data[5 * MiB :]), 404, "NOT_FOUND"
    )


@pytest.fixture
async def small_limit_client(
    settings: Settings, clock: SettableClock
) -> AsyncIterator[tuple[httpx.AsyncClient, AppContext]]:
    limited = settings.model_copy(update={"attachment_max_bytes": 64 * 1024})
    context = build_context(limited, clock)
    application: FastAPI = create_app(limited, context=context)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/api/v1") as c:
            yield c, context
    await context.close()


async def test_oversize_multipart_bodies_are_refused(
    small_limit_client: tuple[httpx.AsyncClient, AppContext], settings: Settings
) -> None:
    client, context = small_limit_client
    headers = await login(client, "admin", ADMIN_PASSWORD)
    task = await make_task(client, headers)
    # Over the request limit (file + multipart framing): refused while reading.
    whole = await attach(client, headers, task["id"], "big.bin", deterministic_bytes(200 * 1024))
    assert_error(whole, 413, "PAYLOAD_TOO_LARGE")
    # Just over the file limit, within the framing allowance: refused by the file check.
    edge = await attach(client, headers, task["id"], "edge.bin", deterministic_bytes(64 * 1024 + 1))
    assert_error(edge, 413, "PAYLOAD_TOO_LARGE")
    fits = await attach(client, headers, task["id"], "fits.bin", deterministic_bytes(64 * 1024))
    assert fits.status_code == 201, fits.text
    assert await count(context, Attachment) == 1
    assert len(stored_objects(settings)) == 1


async def test_abandoned_uploads_are_collected_after_24_hours(
    client: httpx.AsyncClient,
    admin_headers: Headers,
    app_context: AppContext,
    settings: Settings,
    clock: SettableClock,
) -> None:
    data = deterministic_bytes(6 * MiB, seed=5)
    task = await make_task(client, admin_headers)
    upload_id = (await begin(client, admin_headers, task["id"], data)).json()["upload_id"]
    clock.advance(hours=20)
    assert (await put(client, admin_headers, upload_id, 0, data[: 5 * MiB])).status_code == 200
    assert stored_objects(settings)  # the received part is kept somewhere
    collector = engine_registry(settings).get("uploads")

    clock.advance(hours=23, minutes=59)  # 24 h after creation, not after the last chunk
    report = await collector.run(app_context, batch=10)
    assert report.counts["uploads_expired"] == 0
    assert report.next_due == clock.now() + timedelta(minutes=1)
    admin_headers = await login(client, "admin", ADMIN_PASSWORD)  # a token of the new day
    assert (await client.get(f"/uploads/{upload_id}", headers=admin_headers)).status_code == 200

    clock.advance(minutes=1)
    report = await collector.run(app_context, batch=10)
    assert report.counts["uploads_expired"] == 1
    assert_error(await client.get(f"/uploads/{upload_id}", headers=admin_headers), 404, "NOT_FOUND")
    assert stored_objects(settings) == []
    assert await count(app_context, Upload) == 0


async def test_an_upload_is_declared_once_per_idempotency_key(
    client: httpx.AsyncClient, admin_headers: Headers, app_context: AppContext
) -> None:
    task = await make_task(client, admin_headers)
    keyed = {**admin_headers, "Idempotency-Key": "upload-once"}
    first = await begin(client, keyed, task["id"], b"data")
    again = await begin(client, keyed, task["id"], b"data")
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["upload_id"] == first.json()["upload_id"]
    assert await count(app_context, Upload) == 1


async def read_timeline(
    client: httpx.AsyncClient, task_id: str, headers: Headers, **params: Any
) -> list[dict[str, Any]]:
    """Every entry, page by page."""
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/tasks/{task_id}/timeline", params=query, headers=headers)
        assert response.status_code == 200, response.text
        entries += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return entries


async def test_attachments_on_the_timeline(
    client: httpx.AsyncClient, admin_headers: Headers, clock: SettableClock
) -> None:
    task = await make_task(client, admin_headers)
    support = await make_user(client, admin_headers, "support")
    viewer = await make_user(client, admin_headers, "viewer")
    start = clock.now()
    clock.set(start + timedelta(minutes=1))
    comment = await client.post(
        f"/tasks/{task['id']}/comments", json={"body": "Logs attached"}, headers=support.headers
    )
    assert comment.status_code == 201, comment.text
    logs = await attach(client, support.headers, task["id"], "app.log", b"x" * 3000)
    assert logs.status_code == 201, logs.text
    clock.set(start + timedelta(minutes=2))
    shot = await attach(client, admin_headers, task["id"], "screen.png", PNG)
    assert shot.status_code == 201, shot.text
    clock.set(start + timedelta(minutes=3))
    gone = await client.delete(f"/attachments/{shot.json()['id']}", headers=admin_headers)
    assert gone.status_code == 204

    entries = await read_timeline(client, task["id"], viewer.headers)
    assert [e["kind"] for e in entries] == ["created", "comment", "attachment", "attachment"]
    times = [e["occurred_at"] for e in entries]
    assert times == sorted(times)
    # At one instant the comment announcing a file comes before the file.
    assert times[1] == times[2]
    first, second = entries[2], entries[3]
    assert first["summary"] == f"{support.username} attached app.log (2.9 KiB)"
    assert first["actor"] == {"type": "user", "id": support.id, "name": support.username}
    assert first["data"]["attachment_id"] == logs.json()["id"]
    assert first["data"]["sha256"] == sha(b"x" * 3000)
    assert second["summary"] == "admin attached screen.png (2.0 KiB) — since deleted"
    assert second["data"]["deleted_at"] is not None

    assert await read_timeline(client, task["id"], viewer.headers, limit=1) == entries
    only = await read_timeline(client, task["id"], viewer.headers, kind="attachment")
    assert only == entries[2:]
