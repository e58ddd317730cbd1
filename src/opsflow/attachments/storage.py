"""Where attachment bytes live: a local directory, or an S3-compatible bucket.

Both backends keep the same shape: a finished file is an object under a key; a resumable
upload is a set of numbered parts under its own key (files in a folder, or the parts of an
S3 multipart upload) that `assemble` joins into the final object by streaming, hashing as it
goes. Request bodies never reach a backend directly: the service spools each one to a file
first (so its size is checked before anything is stored), then hands the file over.
Blocking calls run in worker threads; memory stays at one copy block per transfer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio.to_thread

from opsflow.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

BLOCK = 1024 * 1024  # bytes per read/write while copying or streaming
HEAD = 4096  # bytes kept from the start of a file for type detection


@dataclass(frozen=True)
class Assembled:
    """What an assembled file turned out to be."""

    size: int
    sha256: str
    head: bytes


@dataclass(frozen=True)
class Part:
    number: int  # 0-based chunk number
    etag: str | None


class Storage(Protocol):
    name: str

    @property
    def spool_dir(self) -> Path:
        """A local folder for spooled request bodies (on the same disk as local objects)."""
        ...

    async def put_file(self, key: str, path: Path) -> None:
        """Store the file at `path` as object `key`; `path` is consumed."""
        ...

    def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start`..`end` (inclusive) of object `key`, in blocks."""
        ...

    async def delete(self, key: str) -> None:
        """Remove object `key` (no error when it is gone already)."""
        ...

    async def begin_upload(self, key: str) -> str | None:
        """Prepare a chunked upload that will become object `key`; returns what the backend
        needs to find it again."""
        ...

    async def put_part(
        self, key: str, backend_id: str | None, number: int, path: Path
    ) -> str | None:
        """Store chunk `number` (sending it again replaces it); `path` is consumed."""
        ...

    async def assemble(self, key: str, backend_id: str | None, parts: Sequence[Part]) -> Assembled:
        """Join the parts in order into object `key`; the parts are gone afterwards."""
        ...

    async def abort_upload(self, key: str, backend_id: str | None) -> None:
        """Drop a chunked upload and whatever parts it holds."""
        ...


def _hash_copy(sources: Sequence[Path], target: Path) -> Assembled:
    digest = hashlib.sha256()
    size = 0
    head = b""
    with target.open("wb") as out:
        for source in sources:
            with source.open("rb") as stream:
                while block := stream.read(BLOCK):
                    digest.update(block)
                    if len(head) < HEAD:
                        head += block[: HEAD - len(head)]
                    size += len(block)
                    out.write(block)
    return Assembled(size=size, sha256=digest.hexdigest(), head=head)


class LocalStorage:
    """Objects as files under `root/objects`, upload parts under `root/uploads/<key>`."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def spool_dir(self) -> Path:
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _object(self, key: str) -> Path:
        return self.root / "objects" / key

    def _parts(self, key: str) -> Path:
        return self.root / "uploads" / key

    async def put_file(self, key: str, path: Path) -> None:
        target = self._object(key)

        def move() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)

        await anyio.to_thread.run_sync(move)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        async with await anyio.open_file(self._object(key), "rb") as stream:
            await stream.seek(start)
            left = end - start + 1
            while left > 0:
                block = await stream.read(min(BLOCK, left))
                if not block:
                    break
                left -= len(block)
                yield block

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(lambda: self._object(key).unlink(missing_ok=True))

    async def begin_upload(self, key: str) -> str | None:
        await anyio.to_thread.run_sync(lambda: self._parts(key).mkdir(parents=True, exist_ok=True))
        return None

    async def put_part(
        self, key: str, backend_id: str | None, number: int, path: Path
    ) -> str | None:
        folder = self._parts(key)

        def move() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(path, folder / f"{number:05d}")

        await anyio.to_thread.run_sync(move)
        return None

    async def assemble(self, key: str, backend_id: str | None, parts: Sequence[Part]) -> Assembled:
        folder = self._parts(key)
        final = self._object(key)

        def join() -> Assembled:
            final.parent.mkdir(parents=True, exist_ok=True)
            partial = self.spool_dir / f"assemble-{uuid.uuid4().hex}"
            try:
                result = _hash_copy([folder / f"{p.number:05d}" for p in parts], partial)
                os.replace(partial, final)
            finally:
                partial.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            return result

        return await anyio.to_thread.run_sync(join)

    async def abort_upload(self, key: str, backend_id: str | None) -> None:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(self._parts(key), ignore_errors=True))


class S3Storage:
    """Objects in a bucket of an S3-compatible service (boto3); a chunked upload is an S3
    multipart upload whose part numbers are the chunk numbers plus one."""

    name = "s3"

    def __init__(self, settings: Settings) -> None:
        assert settings.s3_bucket, "S3 storage needs a bucket"
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.settings = settings
        self._spool = settings.data_dir / "spool"
        self._client: S3Client | None = None

    @property
    def spool_dir(self) -> Path:
        self._spool.mkdir(parents=True, exist_ok=True)
        return self._spool

    @property
    def client(self) -> S3Client:
        if self._client is None:
            import boto3
            from botocore.config import Config

            s = self.settings
            self._client = boto3.client(
                "s3",
                endpoint_url=s.s3_endpoint_url,
                region_name=s.s3_region,
                aws_access_key_id=s.s3_access_key_id,
                aws_secret_access_key=s.s3_secret_access_key,
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 3, "mode": "standard"},
                    # Plain S3 semantics: many S3-compatible servers know no extra checksums.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def _call(self, method: str, **kwargs: Any) -> Any:
        function = getattr(self.client, method)
        return await anyio.to_thread.run_sync(lambda: function(**kwargs))

    async def put_file(self, key: str, path: Path) -> None:
        def upload() -> None:
            try:
                self.client.upload_file(str(path), self.bucket, self._key(key))
            finally:
                path.unlink(missing_ok=True)

        await anyio.to_thread.run_sync(upload)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        answer = await self._call(
            "get_object", Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{end}"
        )
        body = answer["Body"]
        try:
            while block := await anyio.to_thread.run_sync(body.read, BLOCK):
                yield block
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        await self._call("delete_object", Bucket=self.bucket, Key=self._key(key))

    async def begin_upload(self, key: str) -> str | None:
        answer = await self._call("create_multipart_upload", Bucket=self.bucket, Key=self._key(key))
        return str(answer["UploadId"])

    async def put_part(
        self, key: str, backend_id: str | None, number: int, path: Path
    ) -> str | None:
        assert backend_id is not None

        def send() -> str:
            try:
                with path.open("rb") as body:
                    answer = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=self._key(key),
                        UploadId=backend_id,
                        PartNumber=number + 1,
                        Body=body,
                        ContentLength=path.stat().st_size,
                    )
            finally:
                path.unlink(missing_ok=True)
            return str(answer["ETag"])

        return await anyio.to_thread.run_sync(send)

    async def assemble(self, key: str, backend_id: str | None, parts: Sequence[Part]) -> Assembled:
        """Completing the multipart upload creates the object (S3 joins the parts); it is
        read back once, streaming, to measure and hash what was stored."""
        assert backend_id is not None
        await self._call(
            "complete_multipart_upload",
            Bucket=self.bucket,
            Key=self._key(key),
            UploadId=backend_id,
            MultipartUpload={
                "Parts": [{"ETag": p.etag or "", "PartNumber": p.number + 1} for p in parts]
            },
        )
        digest = hashlib.sha256()
        size = 0
        head = b""
        answer = await self._call("get_object", Bucket=self.bucket, Key=self._key(key))
        body = answer["Body"]
        try:
            while block := await anyio.to_thread.run_sync(body.read, BLOCK):
                digest.update(block)
                if len(head) < HEAD:
                    head += block[: HEAD - len(head)]
                size += len(block)
        finally:
            body.close()
        return Assembled(size=size, sha256=digest.hexdigest(), head=head)

    async def abort_upload(self, key: str, backend_id: str | None) -> None:
        if backend_id is None:
            return
        from botocore.exceptions import ClientError

        try:
            await self._call(
                "abort_multipart_upload",
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=backend_id,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"NoSuchUpload", "404"}:
                raise


def build_storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        return S3Storage(settings)
    return LocalStorage(settings.files_dir)
