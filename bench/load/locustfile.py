"""OpsFlow's load profile for locust: operators working tasks, with think time.

Each virtual user signs in once (by username or by e-mail address, at random), then loops:
list tasks with a status and a priority filter (20 per page), think, create a task, think,
read it, think, start it, think, complete it with resolution notes, think, and now and then
(one loop in five) read `/auth/me`. Think time is uniform between 0.5 and 1.5 times
LOAD_THINK_SECONDS (default 1 s) before every request.

Developers declare incidents assigned to themselves (their role may not create plain tasks,
and may progress only tasks assigned to them); managers create tasks and incidents
unassigned, and starting a task takes it. Priorities are mixed: 10 % CRITICAL, 30 % HIGH,
40 % MEDIUM, 20 % LOW.

Environment (`bench/load/profile.py` sets it up):

    LOAD_ACCOUNTS       JSON file: [{"username", "email", "password"}, ...]; users pick them
                        round-robin and sign in with them (several users may share one)
    LOAD_SESSIONS       JSON file: [{"access_token", "role", "user_id"}, ...] issued beforehand;
                        users take one each and do not sign in (the ramp measures the
                        steady request path only)
    LOAD_STAGES         `seconds:users,...`, e.g. `30:20,60:50,30:0`: the user count moves
                        linearly to each target over its stage, then the run ends; without
                        it locust's own -u/-r/--run-time apply
    LOAD_THINK_SECONDS  mean think time (default 1)

    LOAD_ACCOUNTS=accounts.json locust -f bench/load/locustfile.py --headless \
        --host http://127.0.0.1:8000 -u 50 -r 5 --run-time 2m
"""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, LoadTestShape, between, task

API = "/api/v1"
THINK = float(os.environ.get("LOAD_THINK_SECONDS", "1"))
PRIORITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
PRIORITY_WEIGHTS = (1, 3, 4, 2)
STATUS_FILTERS = ("CREATED,ASSIGNED", "IN_PROGRESS", "COMPLETED", "ASSIGNED,IN_PROGRESS")
PRIORITY_FILTERS = ("CRITICAL", "HIGH", "CRITICAL,HIGH", "MEDIUM,LOW")
# Roles that may create plain tasks; every working role may declare incidents.
TASK_CREATORS = frozenset({"admin", "manager", "team_lead", "support"})
# Roles that may start and complete any task; the others only tasks assigned to them.
PROGRESS_ANY = frozenset({"admin", "manager"})


def _read(variable: str) -> list[dict[str, Any]]:
    path = os.environ.get(variable)
    return json.loads(Path(path).read_text()) if path else []


ACCOUNTS = _read("LOAD_ACCOUNTS")
SESSIONS = _read("LOAD_SESSIONS")
# Per locust process; the random start spreads the users of several processes.
_TURN = itertools.count(random.randrange(1_000))


def _retry_after(response: Any) -> float:
    try:
        return min(30.0, max(0.5, float(response.headers.get("Retry-After") or 1)))
    except ValueError:
        return 1.0


class Operator(FastHttpUser):
    wait_time = between(0.5 * THINK, 1.5 * THINK)

    def on_start(self) -> None:
        turn = next(_TURN)
        if SESSIONS:
            session = SESSIONS[turn % len(SESSIONS)]
            self._signed_in(session["access_token"], session["role"], session["user_id"])
            return
        if not ACCOUNTS:
            raise RuntimeError("set LOAD_ACCOUNTS or LOAD_SESSIONS")
        account = ACCOUNTS[turn % len(ACCOUNTS)]
        self.sign_in(account)

    def _signed_in(self, token: str, role: str, user_id: str) -> None:
        self.auth = {"Authorization": f"Bearer {token}"}
        self.role = role
        self.user_id = user_id

    def sign_in(self, account: dict[str, str]) -> None:
        """Sign in by username or e-mail; a busy server (503) or throttle (429) is a
        failure, retried after its Retry-After."""
        login = random.choice(("username", "email"))
        body = {"username": account[login], "password": account["password"]}
        while True:
            with self.client.post(
                f"{API}/auth/login", json=body, name="POST /auth/login", catch_response=True
            ) as response:
                if response.status_code == 200:
                    data = response.json()
                    user = data["user"]
                    self._signed_in(data["access_token"], user["role"], user["id"])
                    return
                response.failure(f"login answered {response.status_code}: {response.text[:200]}")
                if response.status_code not in (429, 503):
                    raise RuntimeError(f"cannot sign in as {account[login]}")
                pause = _retry_after(response)
            gevent.sleep(pause)  # yields to the other users, as locust's own waits do

    def _expect(self, response: Any, status: int) -> dict[str, Any] | None:
        if response.status_code != status:
            response.failure(f"{response.status_code} (expected {status}): {response.text[:200]}")
            return None
        return response.json() if response.text else {}

    @task
    def work_a_task(self) -> None:
        self.list_tasks()
        self.wait()
        task_id = self.create_task()
        if task_id is None:
            return
        self.wait()
        self.get_task(task_id)
        self.wait()
        if not self.change(task_id, "start", None):
            return
        self.wait()
        self.change(task_id, "complete", {"resolution_notes": "Resolved under load"})
        if random.random() < 0.2:
            self.wait()
            with self.client.get(
                f"{API}/auth/me", headers=self.auth, name="GET /auth/me", catch_response=True
            ) as response:
                self._expect(response, 200)

    def list_tasks(self) -> None:
        params = {
            "status": random.choice(STATUS_FILTERS),
            "priority": random.choice(PRIORITY_FILTERS),
            "page_size": "20",
        }
        with self.client.get(
            f"{API}/tasks",
            params=params,
            headers=self.auth,
            name="GET /tasks?status&priority",
            catch_response=True,
        ) as response:
            self._expect(response, 200)

    def create_task(self) -> str | None:
        incident = self.role not in TASK_CREATORS or random.random() < 0.5
        body: dict[str, Any] = {
            "title": f"load {uuid.uuid4().hex[:12]}",
            "task_type": "INCIDENT" if incident else "TASK",
            "priority": random.choices(PRIORITIES, PRIORITY_WEIGHTS)[0],
            "tags": ["load"],
        }
        if self.role not in PROGRESS_ANY:
            body["assigned_to"] = self.user_id
        with self.client.post(
            f"{API}/tasks",
            json=body,
            headers=self.auth,
            name=f"POST /tasks ({body['task_type']})",
            catch_response=True,
        ) as response:
            data = self._expect(response, 201)
        return str(data["id"]) if data else None

    def get_task(self, task_id: str) -> None:
        with self.client.get(
            f"{API}/tasks/{task_id}",
            headers=self.auth,
            name="GET /tasks/{id}",
            catch_response=True,
        ) as response:
            self._expect(response, 200)

    def change(self, task_id: str, action: str, body: dict[str, Any] | None) -> bool:
        with self.client.patch(
            f"{API}/tasks/{task_id}/{action}",
            json=body,
            headers=self.auth,
            name=f"PATCH /tasks/{{id}}/{action}",
            catch_response=True,
        ) as response:
            return self._expect(response, 200) is not None


def parse_stages(text: str) -> list[tuple[float, int]]:
    """`30:20,60:50,30:0` → [(30.0, 20), (60.0, 50), (30.0, 0)]."""
    stages = []
    for part in text.split(","):
        seconds, users = part.split(":")
        stages.append((float(seconds), int(users)))
    return stages


if os.environ.get("LOAD_STAGES"):

    class Stages(LoadTestShape):
        """Move the user count linearly from one stage's target to the next's."""

        stages = parse_stages(os.environ["LOAD_STAGES"])

        def tick(self) -> tuple[int, float] | None:
            elapsed = self.get_run_time()
            start, users = 0.0, 0
            for seconds, target in self.stages:
                if elapsed < start + seconds:
                    share = (elapsed - start) / seconds
                    rate = abs(target - users) / seconds
                    return round(users + (target - users) * share), max(1.0, 2 * rate)
                start, users = start + seconds, target
            return None
