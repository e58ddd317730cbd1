"""The request path side by side with its bare ceiling, driven by wrk.

Starts a real `opsflow serve` and the bare FastAPI app of `ceiling_app.py` (same uvicorn
defaults: uvloop, httptools, one worker unless --workers), each on its own fresh database,
then runs `wrk` (installed from Debian if missing) against both for every operation:
create, get, list (20 per page), start, complete and /auth/me. Prints req/s, p50/p95/p99,
errors, the ratio to the ceiling, and the server's CPU milliseconds per request (from
/proc, over the server process and its children).

    python bench/request_path.py                       # PostgreSQL and SQLite
    python bench/request_path.py --database postgresql --connections 50 --duration 10
    BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/request_path.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _serve import (
    analyze_pg_database,
    cpu_seconds,
    drop_pg_database,
    free_port,
    pg_database,
    start_server,
)

HERE = Path(__file__).resolve().parent
LUA = HERE / "load" / "wrk_request.lua"
PASSWORD = "Bench-Admin-Pass-1"
OPERATIONS = ("create", "get", "list", "start", "complete", "me")


@dataclass
class Figures:
    requests: int
    seconds: float
    errors: int
    p50: float
    p95: float
    p99: float
    cpu_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing; installing it from Debian")
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
    found = shutil.which("wrk")
    if not found:
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
        found = shutil.which("wrk")
    assert found, "wrk could not be installed"
    return found


def run_wrk(
    wrk: str, base: str, op: str, env: dict[str, str], args: argparse.Namespace, pid: int
) -> Figures:
    before = cpu_seconds(pid)
    completed = subprocess.run(
        [
            wrk,
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            base,
        ],
        env={**os.environ, **env, "OP": op},
        capture_output=True,
        text=True,
        check=True,
    )
    used = cpu_seconds(pid) - before
    line = next(row for row in completed.stdout.splitlines() if row.startswith("{"))
    data = json.loads(line)
    requests = data["requests"] - data["exhausted"]
    errors = max(0, data["bad_status"] - data["exhausted"]) + data["socket_errors"]
    return Figures(
        requests=requests,
        seconds=data["duration_us"] / 1e6,
        errors=errors,
        p50=data["p50_us"] / 1000,
        p95=data["p95_us"] / 1000,
        p99=data["p99_us"] / 1000,
        cpu_ms=used * 1000 / max(1, data["requests"]),
    )


def wait_ready(url: str) -> None:
    for _ in range(150):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)  # waiting for the server to come up
    raise SystemExit(f"{url} did not answer in 30 s")


def bench_database(kind: str, wrk: str, args: argparse.Namespace) -> None:
    admin_url = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    created: list[str] = []
    with tempfile.TemporaryDirectory() as workdir:
        opsflow_env = {"OPSFLOW_ADMIN_PASSWORD": PASSWORD}
        ceiling_env = {**os.environ, "CEILING_SQLITE_PATH": f"{workdir}/ceiling.db"}
        if kind == "postgresql":
            opsflow_url, name = pg_database(admin_url, "opsflow_bench")
            created.append(name)
            ceiling_url, name = pg_database(admin_url, "ceiling_bench")
            created.append(name)
            opsflow_env["DATABASE_URL"] = opsflow_url
            ceiling_env["CEILING_DATABASE_URL"] = ceiling_url
        port = free_port()
        ceiling = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "ceiling_app:create_app",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=HERE,
            env=ceiling_env,
        )
        opsflow, opsflow_base = start_server(workdir, opsflow_env, ["--workers", str(args.workers)])
        ceiling_base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(f"{ceiling_base}/api/v1/auth/me")
            token = httpx.post(
                f"{opsflow_base}/api/v1/auth/login",
                json={"username": "admin", "password": PASSWORD},
                timeout=30,
            ).json()["access_token"]
            body = {"title": "seed", "task_type": "INCIDENT", "priority": "HIGH"}
            headers = {"Authorization": f"Bearer {token}"}
            targets = {
                "opsflow": (opsflow_base, opsflow.pid, token),
                "ceiling": (ceiling_base, ceiling.pid, ""),
            }
            urls = {
                "opsflow": opsflow_env.get("DATABASE_URL"),
                "ceiling": ceiling_env.get("CEILING_DATABASE_URL"),
            }
            results: dict[str, dict[str, Figures]] = {"opsflow": {}, "ceiling": {}}
            for label, (base, pid, bearer) in targets.items():
                seed = httpx.post(f"{base}/api/v1/tasks", json=body, headers=headers, timeout=30)
                ids_dir = Path(workdir) / f"ids-{label}"
                ids_dir.mkdir()
                env = {"TOKEN": bearer, "TASK_ID": seed.json()["id"], "IDS_DIR": str(ids_dir)}
                for op in args.operations:
                    if urls[label]:  # statistics of what the operations before wrote
                        analyze_pg_database(str(urls[label]))
                    results[label][op] = run_wrk(wrk, base, op, env, args, pid)
            report(kind, args, results)
        finally:
            for process in (opsflow, ceiling):
                process.terminate()
                process.wait(timeout=20)
            for name in created:
                drop_pg_database(admin_url, name)


def report(kind: str, args: argparse.Namespace, results: dict[str, dict[str, Figures]]) -> None:
    print(
        f"\n{kind}: {args.connections} connections, {args.threads} wrk threads, "
        f"{args.duration} s per operation, {args.workers} worker(s)"
    )
    header = (
        "operation",
        "req/s",
        "bare req/s",
        "ratio",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "bare p99",
        "errors",
        "CPU ms/req",
        "bare CPU",
    )
    print(f"{header[0]:10}" + "".join(f"{h:>11}" for h in header[1:]))
    for op in args.operations:
        ours, bare = results["opsflow"][op], results["ceiling"][op]
        ratio = ours.rate / bare.rate if bare.rate else 0.0
        cells = (
            f"{ours.rate:.0f}",
            f"{bare.rate:.0f}",
            f"{ratio:.2f}",
            f"{ours.p50:.1f}",
            f"{ours.p95:.1f}",
            f"{ours.p99:.1f}",
            f"{bare.p99:.1f}",
            f"{ours.errors}",
            f"{ours.cpu_ms:.2f}",
            f"{bare.cpu_ms:.2f}",
        )
        print(f"{op:10}" + "".join(f"{c:>11}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--operations",
        type=lambda text: [op for op in text.split(",") if op],
        default=list(OPERATIONS),
        help="comma-separated subset of " + ",".join(OPERATIONS),
    )
    args = parser.parse_args()
    if "start" in args.operations or "complete" in args.operations:
        assert "create" in args.operations, "start/complete use the ids create returns"
    wrk = ensure_wrk()
    kinds = ("postgresql", "sqlite") if args.database == "both" else (args.database,)
    for kind in kinds:
        bench_database(kind, wrk, args)


if __name__ == "__main__":
    main()
