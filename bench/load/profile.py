"""OpsFlow's load profile: virtual users with a mixed workload against a real `opsflow serve`.

Starts `opsflow serve` on a fresh database (a new PostgreSQL database, or SQLite in a
temporary folder), has the admin register operator accounts (two developers for every
manager), then runs locust headless in its own processes with `locustfile.py` beside this
file: each user signs in once, then lists, creates, reads, starts and completes tasks with
about a second of think time between requests.

Profile mode (the default) moves the user count 0 → 20 over 30 s, 20 → 50 over 60 s and
50 → 0 over 30 s (`--scale 0.5` halves every stage), then prints per operation the requests,
req/s, p50/p95/p99 and errors, the server's CPU milliseconds per request (from /proc, over
the server process and its workers; the database's own CPU is not included), and the
thresholds p95 < 500 ms and errors < 1 % over all requests as PASS/FAIL lines (the exit code
is 1 when one fails).

`--ramp` holds the user count at each of `--steps` in turn (`--step-seconds` each, times
`--scale`) with sessions signed in beforehand, so only the steady request path is measured,
for every `--workers` count (interleaved: each step runs against every worker count's
server before the next, so that other work on the machine weighs on them alike), until a
step's p99 passes `--stop-ms` (1 s) or its errors reach 1 %. It prints req/s, latency and
server CPU per request (gross, and less what the idle server burns meanwhile: its engines'
passes) per step, the knee (the req/s at which p99 over all requests crosses `--knee-ms`,
interpolated between the steps around it), and the ratios of the knees and of the highest
req/s of the largest and the smallest worker count.

    python bench/load/profile.py                                 # PostgreSQL and SQLite, 1 worker
    python bench/load/profile.py --database sqlite --scale 0.5   # about a minute
    python bench/load/profile.py --ramp --workers 1,2 --scale 0.5
    BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/load/profile.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _serve import cpu_seconds, drop_pg_database, pg_database, start_server  # noqa: E402

LOCUSTFILE = HERE / "locustfile.py"
ADMIN_PASSWORD = "Bench-Admin-Pass-1"
ACCOUNT_PASSWORD = "Load-Operator-Pass-1"
# (seconds, users): ramp up to 20, on to 50, back down to 0.
STAGES = ((30.0, 20), (60.0, 50), (30.0, 0))
AGGREGATED = "Aggregated"


@dataclass
class Row:
    name: str
    requests: int
    failures: int
    rate: float
    p50: float
    p95: float
    p99: float

    @property
    def error_pct(self) -> float:
        return 100 * self.failures / self.requests if self.requests else 0.0


@dataclass
class Run:
    rows: list[Row]
    cpu_ms: float  # server CPU per request
    net_cpu_ms: float  # less what the idle server burns in the same time (its engines)

    @property
    def total(self) -> Row:
        return next(row for row in self.rows if row.name == AGGREGATED)


def _number(text: str) -> float:
    return float(text) if text not in ("", "N/A") else 0.0


def read_stats(prefix: Path) -> list[Row]:
    with Path(f"{prefix}_stats.csv").open(newline="") as handle:
        return [
            Row(
                name=line["Name"],
                requests=int(line["Request Count"]),
                failures=int(line["Failure Count"]),
                rate=_number(line["Requests/s"]),
                p50=_number(line["50%"]),
                p95=_number(line["95%"]),
                p99=_number(line["99%"]),
            )
            for line in csv.DictReader(handle)
        ]


@contextmanager
def server(kind: str, workers: int, workdir: Path, no_engine: bool) -> Iterator[tuple[int, str]]:
    """A fresh `opsflow serve` on a fresh database; answers (pid, base URL)."""
    admin_url = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    env = {"OPSFLOW_ADMIN_PASSWORD": ADMIN_PASSWORD}
    created = None
    if kind == "postgresql":
        env["DATABASE_URL"], created = pg_database(admin_url, "opsflow_load")
    folder = workdir / f"{kind}-{workers}w"
    folder.mkdir()
    extra = ["--no-engine"] if no_engine else []
    process, base = start_server(str(folder), env, ["--workers", str(workers), *extra])
    try:
        yield process.pid, base
    finally:
        process.terminate()
        process.wait(timeout=30)
        if created:
            drop_pg_database(admin_url, created)


def create_accounts(base: str, args: argparse.Namespace) -> list[dict[str, str]]:
    """The admin registers `--accounts` operators: every third one a manager, the others
    developers."""
    with httpx.Client(base_url=f"{base}/api/v1", timeout=60) as http:
        login = http.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        accounts = []
        for index in range(args.accounts):
            account = {
                "username": f"operator{index}",
                "email": f"operator{index}@example.com",
                "password": ACCOUNT_PASSWORD,
                "role": "manager" if index % 3 == 0 else "developer",
            }
            body = {**account, "full_name": f"Operator {index}"}
            http.post("/auth/register", json=body, headers=headers).raise_for_status()
            accounts.append(account)
    return accounts


def sign_in_all(base: str, accounts: list[dict[str, str]]) -> list[dict[str, str]]:
    sessions = []
    with httpx.Client(base_url=f"{base}/api/v1", timeout=60) as http:
        for account in accounts:
            body = {"username": account["username"], "password": account["password"]}
            response = http.post("/auth/login", json=body)
            response.raise_for_status()
            data = response.json()
            sessions.append(
                {
                    "access_token": data["access_token"],
                    "role": data["user"]["role"],
                    "user_id": data["user"]["id"],
                }
            )
    return sessions


def idle_cpu(pid: int, seconds: float = 5.0) -> float:
    """CPU milliseconds per second the server burns with no requests (its engines' passes)."""
    before = cpu_seconds(pid)
    time.sleep(seconds)  # sampling an idle server
    return (cpu_seconds(pid) - before) * 1000 / seconds


def run_locust(
    base: str,
    pid: int,
    prefix: Path,
    env: dict[str, str],
    options: list[str],
    processes: int,
    idle_ms: float,
) -> Run:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--host",
        base,
        "--csv",
        str(prefix),
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
        *options,
    ]
    if processes > 1:
        command += ["--processes", str(processes)]
    log = Path(f"{prefix}.log")
    before, started = cpu_seconds(pid), time.monotonic()
    with log.open("w") as output:
        completed = subprocess.run(
            command,
            cwd=prefix.parent,
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    used, wall = cpu_seconds(pid) - before, time.monotonic() - started
    if completed.returncode != 0:
        print(log.read_text()[-4000:])
        raise SystemExit(f"locust exited with {completed.returncode}")
    rows = read_stats(prefix)
    total = next(row for row in rows if row.name == AGGREGATED)
    requests = max(1, total.requests)
    return Run(
        rows=rows,
        cpu_ms=used * 1000 / requests,
        net_cpu_ms=(used * 1000 - idle_ms * wall) / requests,
    )


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min: {five:.1f}) on {os.cpu_count()} cores"


def profile(kind: str, workers: int, args: argparse.Namespace, workdir: Path) -> bool:
    stages = [(seconds * args.scale, users) for seconds, users in STAGES]
    text = ", ".join(f"{users} users over {seconds:g} s" for seconds, users in stages)
    with server(kind, workers, workdir, args.no_engine) as (pid, base):
        accounts = create_accounts(base, args)
        accounts_file = workdir / f"accounts-{kind}-{workers}.json"
        accounts_file.write_text(json.dumps(accounts))
        idle = idle_cpu(pid)
        print(f"\n{kind}, {workers} worker(s): {text}; think time {args.think:g} s")
        print(f"  idle server: {idle:.0f} ms CPU per second; before: {load()}")
        env = {
            "LOAD_ACCOUNTS": str(accounts_file),
            "LOAD_STAGES": ",".join(f"{seconds:g}:{users}" for seconds, users in stages),
            "LOAD_THINK_SECONDS": str(args.think),
        }
        prefix = workdir / f"profile-{kind}-{workers}"
        run = run_locust(base, pid, prefix, env, [], args.locust_processes, idle)
        print(f"  after:  {load()}")
    header = ("requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors")
    print(f"  {'operation':32}" + "".join(f"{h:>10}" for h in header))
    for row in run.rows:
        cells = (
            f"{row.requests}",
            f"{row.rate:.1f}",
            f"{row.p50:.0f}",
            f"{row.p95:.0f}",
            f"{row.p99:.0f}",
            f"{row.failures}",
        )
        name = "all requests" if row.name == AGGREGATED else row.name
        print(f"  {name:32}" + "".join(f"{c:>10}" for c in cells))
    print(
        f"  server CPU per request: {run.cpu_ms:.2f} ms, {run.net_cpu_ms:.2f} ms less the idle "
        "server's (sign-ins included; the database's own CPU not)"
    )
    total = run.total
    latency_ok = total.p95 < args.p95_ms
    errors_ok = total.error_pct < args.max_errors_pct
    print(f"  {'PASS' if latency_ok else 'FAIL'}  p95 {total.p95:.0f} ms < {args.p95_ms:g} ms")
    print(
        f"  {'PASS' if errors_ok else 'FAIL'}  errors {total.error_pct:.2f} % "
        f"< {args.max_errors_pct:g} % ({total.failures} of {total.requests})"
    )
    return latency_ok and errors_ok


@dataclass
class Step:
    users: int
    run: Run


def knee(steps: list[Step], limit: float) -> tuple[float | None, str]:
    """The req/s at which p99 crosses `limit`, interpolated between the last step under it
    and the first over it; None with a note when the steps do not bracket it."""
    previous = None
    for step in steps:
        total = step.run.total
        if total.p99 > limit:
            if previous is None:
                return None, f"p99 over {limit:g} ms already at {total.rate:.0f} req/s"
            before = previous.run.total
            share = (limit - before.p99) / (total.p99 - before.p99)
            rate = before.rate + share * (total.rate - before.rate)
            return rate, f"{rate:.0f} req/s (between {previous.users} and {step.users} users)"
        previous = step
    if previous is None:
        return None, "no steps"
    last = previous.run.total.rate
    return None, f"p99 under {limit:g} ms up to {last:.0f} req/s (the last step)"


@dataclass
class Target:
    workers: int
    pid: int
    base: str
    env: dict[str, str]
    idle: float
    steps: list[Step]
    done: bool = False


def ramp(kind: str, args: argparse.Namespace, workdir: Path, workers: list[int]) -> None:
    """Step every worker count's server through the same user counts, interleaved (each
    step is run for every worker count before the next), so that whatever else loads the
    machine weighs on them alike."""
    seconds = max(5, round(args.step_seconds * args.scale))
    with ExitStack() as stack:
        targets = []
        for count in workers:
            pid, base = stack.enter_context(server(kind, count, workdir, args.no_engine))
            sessions_file = workdir / f"sessions-{kind}-{count}.json"
            sessions_file.write_text(json.dumps(sign_in_all(base, create_accounts(base, args))))
            env = {"LOAD_SESSIONS": str(sessions_file), "LOAD_THINK_SECONDS": str(args.think)}
            targets.append(Target(count, pid, base, env, idle_cpu(pid), []))
        idle = ", ".join(f"{t.workers} worker(s) {t.idle:.0f} ms" for t in targets)
        print(f"\n{kind}: {seconds} s per step; idle servers' CPU per second: {idle}")
        print(
            f"  {'workers':>7}{'users':>6}{'req/s':>9}{'p50':>7}{'p95':>7}{'p99':>7}{'err %':>7}"
            f"{'CPU ms':>8}{'net':>7}"
        )
        for users in args.steps:
            for target in targets:
                if target.done:
                    continue
                options = ["-u", str(users), "-r", str(users), "--run-time", f"{seconds}s"]
                prefix = workdir / f"ramp-{kind}-{target.workers}-{users}"
                run = run_locust(
                    target.base,
                    target.pid,
                    prefix,
                    target.env,
                    options,
                    args.locust_processes,
                    target.idle,
                )
                target.steps.append(Step(users, run))
                total = run.total
                print(
                    f"  {target.workers:7d}{users:6d}{total.rate:9.1f}{total.p50:7.0f}"
                    f"{total.p95:7.0f}{total.p99:7.0f}{total.error_pct:7.2f}{run.cpu_ms:8.2f}"
                    f"{run.net_cpu_ms:7.2f}   {load()}",
                    flush=True,
                )
                target.done = total.p99 > args.stop_ms or total.error_pct >= args.max_errors_pct
    for target in targets:
        last = target.steps[-1]
        print(f"  {target.workers} worker(s), p50/p99 ms per operation at {last.users} users:")
        print(
            "    "
            + "; ".join(
                f"{r.name} {r.p50:.0f}/{r.p99:.0f}" for r in last.run.rows if r.name != AGGREGATED
            )
        )
    report_ramp(kind, {t.workers: t.steps for t in targets}, args.knee_ms)


def report_ramp(kind: str, results: dict[int, list[Step]], limit: float) -> None:
    print(f"\n{kind}: knee = req/s where p99 over all requests crosses {limit:g} ms")
    knees: dict[int, float | None] = {}
    for workers, steps in results.items():
        knees[workers], note = knee(steps, limit)
        best = max(step.run.total.rate for step in steps)
        print(f"  {workers} worker(s): knee {note}; highest req/s measured {best:.0f}")
    if len(results) > 1:
        low, high = min(results), max(results)
        best = {w: max(step.run.total.rate for step in steps) for w, steps in results.items()}
        knee_low, knee_high = knees[low], knees[high]
        if knee_low and knee_high:
            print(f"  scaling {high} workers / {low}: knee {knee_high / knee_low:.2f}x", end="")
        else:
            print(f"  scaling {high} workers / {low}: knee not bracketed", end="")
        print(f", highest req/s {best[high] / best[low]:.2f}x")


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite", "both"))
    parser.add_argument("--workers", type=numbers, help="comma-separated worker counts")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every duration")
    parser.add_argument("--accounts", type=int, default=12, help="operators registered")
    parser.add_argument("--think", type=float, default=1.0, help="mean think time, seconds")
    parser.add_argument("--p95-ms", type=float, default=500.0)
    parser.add_argument("--max-errors-pct", type=float, default=1.0)
    parser.add_argument("--locust-processes", type=int, default=1)
    parser.add_argument(
        "--no-engine", action="store_true", help="serve the API only (engines not in-process)"
    )
    parser.add_argument("--ramp", action="store_true", help="step users up to find the knee")
    parser.add_argument("--steps", type=numbers, default=[5, 10, 20, 40, 60, 80, 120, 160, 200])
    parser.add_argument("--step-seconds", type=float, default=30.0)
    parser.add_argument("--knee-ms", type=float, default=100.0)
    parser.add_argument(
        "--stop-ms", type=float, default=1000.0, help="the ramp stops after a step with p99 over"
    )
    args = parser.parse_args()
    database = args.database or ("postgresql" if args.ramp else "both")
    kinds = ("postgresql", "sqlite") if database == "both" else (database,)
    workers = args.workers or ([1, 2] if args.ramp else [1])
    passed = True
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        for kind in kinds:
            if args.ramp:
                ramp(kind, args, workdir, workers)
            else:
                for count in workers:
                    passed = profile(kind, count, args, workdir) and passed
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
