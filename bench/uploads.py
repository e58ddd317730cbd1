"""Resumable uploads over real HTTP against a running `opsflow serve`: throughput and the
server's memory.

Writes a file of deterministic bytes (1 GiB by default) in a temporary folder, times copying
it on the same disk (the baseline), then starts a server (embedded SQLite in that folder, or
the database in DATABASE_URL; local storage in the same folder) and uploads the file in
chunks over loopback: POST /uploads, PUT every chunk (C at a time, each streamed from the
file), POST /uploads/{id}/complete (assembly + sha256 verification). Prints MB/s for the
chunks, the assembly, the whole upload and the copy, and the server's resident memory idle
(after a warm-up upload) and at its peak (sampled every 20 ms, and the kernel's high-water
mark), for a goal of peak within 100 MiB of idle.

    python bench/uploads.py --size-mib 1024 --chunk-mib 8 --concurrency 2
    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1/bench python bench/uploads.py
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from _serve import start_server

PASSWORD = "Bench-Admin-Pass-1"
MiB = 1024 * 1024


def write_file(path: Path, size: int) -> str:
    """`size` deterministic bytes: one pseudo-random MiB, each copy stamped with its index."""
    base = bytearray(hashlib.sha256(b"opsflow").digest() * (MiB // 32))
    digest = hashlib.sha256()
    with path.open("wb") as out:
        written = 0
        index = 0
        while written < size:
            base[:8] = index.to_bytes(8, "big")
            block = bytes(base[: min(MiB, size - written)])
            digest.update(block)
            out.write(block)
            written += len(block)
            index += 1
    return digest.hexdigest()


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Sampler:
    """The largest VmRSS of a process, sampled every 20 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self._stop.wait(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def file_part(path: Path, offset: int, length: int) -> AsyncIterator[bytes]:
    """One chunk of the file, read in 1 MiB blocks (the client's memory stays flat too)."""
    with path.open("rb") as source:
        source.seek(offset)
        left = length
        while left > 0:
            block = source.read(min(MiB, left))
            if not block:
                return
            left -= len(block)
            yield block


async def upload(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    task_id: str,
    path: Path,
    size: int,
    sha256: str,
    chunk: int,
    concurrency: int,
) -> tuple[float, float, dict[str, object]]:
    started = time.perf_counter()
    begun = await http.post(
        "/uploads",
        json={
            "task_id": task_id,
            "filename": path.name,
            "size": size,
            "sha256": sha256,
            "chunk_size": chunk,
        },
        headers=headers,
    )
    begun.raise_for_status()
    upload_id = begun.json()["upload_id"]
    total = begun.json()["total_chunks"]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(total):
        queue.put_nowait(number)

    async def sender() -> None:
        while not queue.empty():
            number = queue.get_nowait()
            offset = number * chunk
            length = min(chunk, size - offset)
            answer = await http.put(
                f"/uploads/{upload_id}/chunks/{number}",
                content=file_part(path, offset, length),
                headers={**headers, "Content-Length": str(length)},
            )
            answer.raise_for_status()

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    chunks_done = time.perf_counter()
    completed = await http.post(f"/uploads/{upload_id}/complete", headers=headers)
    completed.raise_for_status()
    finished = time.perf_counter()
    return chunks_done - started, finished - chunks_done, completed.json()


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="opsflow-bench-uploads-") as folder:
        work = Path(folder)
        size = args.size_mib * MiB
        source = work / "payload.bin"
        started = time.perf_counter()
        sha256 = write_file(source, size)
        print(f"file: {args.size_mib} MiB written in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        shutil.copyfile(source, work / "copy.bin")
        copy_seconds = time.perf_counter() - started
        (work / "copy.bin").unlink()

        env = {
            "OPSFLOW_ADMIN_PASSWORD": PASSWORD,
            "OPSFLOW_PASSWORD_TIME_COST": "1",
            "OPSFLOW_PASSWORD_MEMORY_COST_KIB": "1024",
            "OPSFLOW_DATA_DIR": str(work / "data"),
            "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{work}/opsflow.db"),
        }
        process, base = start_server(str(work), env)
        try:
            async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=300) as http:
                login = await http.post(
                    "/auth/login", json={"username": "admin", "password": PASSWORD}
                )
                headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
                task = await http.post("/tasks", json={"title": "bench upload"}, headers=headers)
                task_id = task.json()["id"]
                # Warm-up: one small upload, so idle memory includes the code paths used.
                warm = work / "warm.bin"
                warm_sha = write_file(warm, args.chunk_mib * MiB)
                chunk = args.chunk_mib * MiB
                await upload(http, headers, task_id, warm, chunk, warm_sha, chunk, 1)
                idle = rss_kib(process.pid)
                with Sampler(process.pid) as sampler:
                    chunks_s, assemble_s, attachment = await upload(
                        http,
                        headers,
                        task_id,
                        source,
                        size,
                        sha256,
                        args.chunk_mib * MiB,
                        args.concurrency,
                    )
                high_water = rss_kib(process.pid, "VmHWM")
        finally:
            process.terminate()
            process.wait(timeout=30)
        assert attachment["sha256"] == sha256, attachment
        mb = size / 1e6
        total = chunks_s + assemble_s
        print(
            f"upload: {args.size_mib} MiB in {args.chunk_mib} MiB chunks, "
            f"{args.concurrency} at a time, storage local, "
            f"database {'sqlite' if 'sqlite' in env['DATABASE_URL'] else 'postgresql'}"
        )
        print(f"  chunks     {chunks_s:6.1f} s  {mb / chunks_s:7.1f} MB/s")
        print(f"  assemble   {assemble_s:6.1f} s  {mb / assemble_s:7.1f} MB/s (read, hash, write)")
        print(f"  total      {total:6.1f} s  {mb / total:7.1f} MB/s  (sha256 verified)")
        print(f"  disk copy  {copy_seconds:6.1f} s  {mb / copy_seconds:7.1f} MB/s (same file)")
        peak = sampler.peak
        print(
            f"server RSS: idle {idle / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB "
            f"(+{(peak - idle) / 1024:.0f} MiB; kernel high-water {high_water / 1024:.0f} MiB); "
            f"goal: within 100 MiB of idle -> {'met' if peak - idle <= 100 * 1024 else 'missed'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
