"""The demo's organisation: teams, people in every role, and the SLA configuration."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from opsflow.auth.principal import Principal
from opsflow.models.enums import ActorType, Role
from opsflow.models.team import Team
from opsflow.models.user import User

# Business hours in two time zones, pause while blocked on low-priority work, no escalation
# levels: the demo's history has no escalation runs to account for.
SLA_CONFIG = """\
sla_targets:
  ENTERPRISE:
    P0: {response_minutes: 15, resolution_minutes: 120}
    P1: {response_minutes: 30, resolution_minutes: 240}
    P2: {response_minutes: 120, resolution_minutes: 1440}
    P3: {response_minutes: 480, resolution_minutes: 4320}
  PREMIUM:
    P0: {response_minutes: 30, resolution_minutes: 240}
    P1: {response_minutes: 60, resolution_minutes: 480}
    P2: {response_minutes: 240, resolution_minutes: 2880}
    P3: {response_minutes: 960, resolution_minutes: 5760}
alert_thresholds:
  warning: 25
  critical: 5
opsflow:
  version: 1
  calendars:
    emea-business:
      timezone: Europe/Paris
      hours: {mon: ["09:00-18:00"], tue: ["09:00-18:00"], wed: ["09:00-18:00"],
              thu: ["09:00-18:00"], fri: ["09:00-18:00"]}
    us-business:
      timezone: America/New_York
      hours: {mon: ["08:00-17:00"], tue: ["08:00-17:00"], wed: ["08:00-17:00"],
              thu: ["08:00-17:00"], fri: ["08:00-17:00"]}
  policies:
    task-low:
      task_type: TASK
      priority: P3
      response_minutes: 480
      resolution_minutes: 2400
      calendar: emea-business
      pause_on_blocked: true
    task-medium:
      task_type: TASK
      priority: P2
      response_minutes: 240
      resolution_minutes: 1440
      calendar: us-business
      pause_on_blocked: true
"""

TEAMS = (
    ("Platform", "Kubernetes clusters, CI runners and the service mesh"),
    ("Payments", "Card processing, payouts and the ledger"),
    ("Identity", "Login, SSO and account recovery"),
    ("Data", "Warehouse, pipelines and reporting"),
    ("Mobile", "iOS and Android apps and their backend"),
    ("Customer Support", "First line for customers of every tier"),
)
SERVICES = {
    "Platform": ("k8s-prod", "ci-runners", "ingress", "service-mesh"),
    "Payments": ("payments-api", "ledger", "payouts", "card-gateway"),
    "Identity": ("auth-api", "sso", "mfa", "account-recovery"),
    "Data": ("warehouse", "etl", "kafka", "reporting"),
    "Mobile": ("ios-app", "android-app", "push-service", "mobile-bff"),
    "Customer Support": ("helpdesk", "billing-portal", "status-page", "crm"),
}
FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Radia",
    "Edsger",
    "Frances",
    "Tim",
    "Hedy",
    "Donald",
    "Katherine",
    "John",
    "Sophie",
    "Yuki",
    "Amara",
    "Mateo",
    "Priya",
    "Lars",
    "Ines",
    "Omar",
    "Chen",
    "Fatima",
    "Noah",
    "Elena",
    "Kofi",
    "Mei",
    "Diego",
    "Aisha",
    "Lukas",
    "Zara",
    "Ivan",
    "Nia",
    "Arjun",
    "Freya",
    "Tomas",
    "Leila",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Perlman",
    "Dijkstra",
    "Allen",
    "Berners",
    "Lamarr",
    "Knuth",
    "Johnson",
    "McCarthy",
    "Wilson",
    "Tanaka",
    "Okafor",
    "Garcia",
    "Sharma",
    "Nilsson",
    "Moreau",
    "Haddad",
    "Wei",
    "Rahman",
    "Becker",
    "Rossi",
    "Mensah",
    "Lin",
]


@dataclass
class Directory:
    """Teams and people; who works which team's tasks."""

    teams: list[Team] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    # team id -> the people who work its tasks (its developers and its lead)
    workers: dict[uuid.UUID, list[User]] = field(default_factory=dict)
    leads: dict[uuid.UUID, User] = field(default_factory=dict)
    reporters: list[User] = field(default_factory=list)
    admin: User | None = None

    def by_role(self, role: Role) -> list[User]:
        return [u for u in self.users if u.role == role.value]


def principal(user: User) -> Principal:
    return Principal(
        actor_type=ActorType.USER,
        id=user.id,
        name=user.username,
        role=Role(user.role),
        team_id=user.team_id,
    )


def build_directory(rng: random.Random, hashed_password: str, now: datetime) -> Directory:
    """Six teams (a lead, developers and support people each), an admin, managers, auditors
    and viewers: every role. Names are drawn from `rng`; usernames are first.last."""
    directory = Directory()
    names: set[str] = set()

    def person(role: Role, team: Team | None, username: str | None = None) -> User:
        while True:
            first, last = rng.choice(FIRST), rng.choice(LAST)
            login = username or f"{first}.{last}".lower()
            if login not in names:
                break
        names.add(login)
        user = User(
            id=uuid.UUID(int=rng.getrandbits(128), version=4),
            email=f"{login}@demo.opsflow.local",
            username=login,
            full_name=f"{first} {last}" if username is None else "Administrator",
            hashed_password=hashed_password,
            role=role.value,
            team_id=team.id if team else None,
            is_active=True,
            created_at=now,
            updated_at=now,
        )
        directory.users.append(user)
        return user

    directory.admin = person(Role.ADMIN, None, "admin")
    for name, description in TEAMS:
        team = Team(
            id=uuid.UUID(int=rng.getrandbits(128), version=4),
            name=name,
            description=description,
            is_active=True,
            created_at=now,
            updated_at=now,
        )
        directory.teams.append(team)
        lead = person(Role.TEAM_LEAD, team)
        team.lead_id = lead.id
        directory.leads[team.id] = lead
        # Support people report and comment; developers and the lead work the tasks.
        directory.workers[team.id] = [lead] + [person(Role.DEVELOPER, team) for _ in range(4)]
        for _ in range(4 if name == "Customer Support" else 1):
            person(Role.SUPPORT, team)
    managers = [person(Role.MANAGER, None) for _ in range(2)]
    for role, count in ((Role.AUDITOR, 2), (Role.VIEWER, 3)):
        for _ in range(count):
            person(role, None)
    directory.reporters = (
        managers + directory.by_role(Role.SUPPORT) + list(directory.leads.values())
    )
    return directory
