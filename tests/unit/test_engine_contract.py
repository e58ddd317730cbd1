"""The engine contract: the registry every driver runs, and the import rules that keep the
engines (and the relay, and the context) free of the domains' services."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsflow.clock import SettableClock
from opsflow.composition import engine_registry
from opsflow.context import AppContext
from opsflow.workers.contract import EngineRegistry, PassReport
from opsflow.workers.rounds import Cadence, RoundReport
from tests.conftest import make_settings
from tests.factories import ALL_PASSES

SRC = Path(__file__).resolve().parents[2] / "src" / "opsflow"


class Probe:
    def __init__(self, name: str) -> None:
        self.name = name
        self.batch = 10
        self.on_commit = name == "relay"

    async def run(self, ctx: AppContext, *, batch: int) -> PassReport:
        return PassReport(self.name)


def test_registry_runs_the_engines_in_round_order() -> None:
    registry = engine_registry(make_settings("sqlite+aiosqlite:///unused.db"))
    # The round order, written out: the one place it is pinned (tests elsewhere use ALL_PASSES).
    assert (
        ",".join(registry.names)
        == "sla,heartbeats,flapping,relay,escalation,delivery,uploads,outbox"
    )
    assert registry.names == ALL_PASSES
    assert registry.parse("all").names == registry.names
    assert registry.parse("delivery, SLA").names == ("sla", "delivery")  # round order wins
    for bad in ("", "sla,nope", ",", "all,sla"):
        with pytest.raises(ValueError, match="sla,heartbeats,flapping,relay,escalation,delivery"):
            registry.parse(bad)


@pytest.mark.parametrize(
    ("url", "batch"),
    [
        ("postgresql+asyncpg://opsflow@localhost/opsflow", 500),
        ("sqlite+aiosqlite:///unused.db", 20),  # a pass holds SQLite's only write lock
    ],
)
def test_the_relay_batch_follows_the_database(url: str, batch: int) -> None:
    assert engine_registry(make_settings(url)).get("relay").batch == batch


def test_the_sla_batch_comes_from_the_settings() -> None:
    settings = make_settings("sqlite+aiosqlite:///unused.db", engine_batch_size=42)
    assert engine_registry(settings).get("sla").batch == 42


def test_a_new_engine_is_one_registration() -> None:
    registry = EngineRegistry([Probe("a"), Probe("b")])
    assert registry.names == ("a", "b")
    assert registry.select(["b"]).names == ("b",)
    with pytest.raises(ValueError, match="unique"):
        EngineRegistry([Probe("a"), Probe("a")])


def test_round_report_combines_its_passes() -> None:
    early = datetime(2026, 1, 1, tzinfo=UTC)
    late = datetime(2026, 1, 2, tzinfo=UTC)
    report = RoundReport(
        [
            PassReport("a", worked=True, next_due=late),
            PassReport("b", backlog=True, next_due=early),
            PassReport("c"),
        ]
    )
    assert (report.worked, report.backlog, report.next_due) == (True, True, early)
    assert RoundReport().next_due is None
    assert not RoundReport([PassReport("a")]).worked


def _imports(path: Path) -> set[str]:
    """Modules a file imports at run time (``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(path.read_text("utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize(
    "path",
    [*sorted(SRC.glob("*/engine.py")), SRC / "events" / "relay.py"],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_engines_and_the_relay_import_no_service(path: Path) -> None:
    services = {name for name in _imports(path) if name.split(".")[-1] == "service"}
    assert services == set()


def test_the_context_imports_no_domain_at_run_time() -> None:
    domains = {"auth", "notifications", "tasks", "sla", "escalation", "webhooks", "users"}
    imported = {name.split(".")[1] for name in _imports(SRC / "context.py") if "." in name}
    assert imported & domains == set()


def test_a_commit_wakes_only_the_relay_and_what_acts_on_its_consumers_at_once() -> None:
    registry = engine_registry(make_settings("sqlite+aiosqlite:///unused.db"))
    assert registry.on_commit().names == ("relay", "escalation", "delivery")


START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _cadence() -> tuple[Cadence, SettableClock]:
    clock = SettableClock(START)
    registry = EngineRegistry([Probe("sla"), Probe("relay"), Probe("outbox")])
    return Cadence(registry, 10.0, clock), clock


def test_cadence_runs_everything_on_time_and_the_commit_engines_when_woken() -> None:
    cadence, clock = _cadence()
    assert cadence.next_round().names == ("sla", "relay", "outbox")  # the first round
    assert cadence.after(RoundReport()) == 10.0  # nothing due: the interval
    cadence.waited(True)  # a commit, 10 s before the next full round
    clock.advance(timedelta(seconds=3))
    assert cadence.next_round().names == ("relay",)
    assert cadence.after(RoundReport()) == 7.0  # the full round keeps its time
    cadence.waited(False)  # that time came
    clock.advance(timedelta(seconds=7))
    assert cadence.next_round().names == ("sla", "relay", "outbox")


def test_cadence_a_wake_after_the_full_rounds_time_runs_everything() -> None:
    cadence, clock = _cadence()
    cadence.next_round()
    due = START + timedelta(seconds=4)
    assert cadence.after(RoundReport([PassReport("sla", next_due=due)])) == 4.0
    cadence.waited(True)
    clock.advance(timedelta(seconds=5))  # e.g. a test moved the clock past the due instant
    assert cadence.next_round().names == ("sla", "relay", "outbox")


def test_cadence_backlog_repeats_the_same_kind_of_round() -> None:
    cadence, _ = _cadence()
    cadence.next_round()
    assert cadence.after(RoundReport([PassReport("sla", backlog=True)])) is None
    assert cadence.next_round().names == ("sla", "relay", "outbox")
    assert cadence.after(RoundReport()) == 10.0
    cadence.waited(True)
    assert cadence.next_round().names == ("relay",)
    assert cadence.after(RoundReport([PassReport("relay", backlog=True)])) is None
    assert cadence.next_round().names == ("relay",)
    # A woken round's own due instant comes before the full round's time: it wins.
    due = START + timedelta(seconds=2)
    assert cadence.after(RoundReport([PassReport("relay", next_due=due)])) == 2.0
