"""The demo's shifted copies (pure): fresh ids and moved instants wherever they appear, and
audit rows whose hash is what the audit chain computes for their content."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from opsflow.audit import writer as audit_writer
from opsflow.audit.chain import GENESIS_HASH, chain_hash
from opsflow.auth.principal import Principal
from opsflow.demo import copies
from opsflow.kit.jsonable import to_jsonable
from opsflow.models.collaboration import Comment

AT = datetime(2026, 3, 2, 9, 30, 15, 250000, tzinfo=UTC)
TASK = uuid.UUID("11111111-2222-4333-8444-555555555555")
COMMENT = uuid.UUID("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee")
AUTHOR = uuid.UUID("99999999-8888-4777-8666-555555555555")
COLUMNS = ("id", "task_id", "author_id", "body", "mentions", "created_at", "updated_at")


def _comment() -> Comment:
    return Comment(
        id=COMMENT,
        task_id=TASK,
        author_id=AUTHOR,
        body=f"see task {TASK} since {to_jsonable(AT)}",
        mentions=[str(TASK), str(AUTHOR)],
        created_at=AT,
        updated_at=AT + timedelta(minutes=5),
    )


def _pending() -> audit_writer.Pending:
    return audit_writer.Pending(
        entity_type="task",
        entity_id=TASK,
        action="TASK_UPDATED",
        actor=Principal.system("demo"),
        timestamp=AT,
        changes={"deadline": [to_jsonable(AT), to_jsonable(AT + timedelta(hours=1))]},
        previous_state={"id": str(TASK), "assigned_to": str(AUTHOR)},
        new_state={"id": str(TASK), "at": AT.isoformat(), "n": 1.5},
        metadata={},
    )


def _template() -> copies.Template:
    return copies.compile_template(
        [_comment()],
        [_pending()],
        [TASK, COMMENT],
        lambda _model: [(name, None) for name in COLUMNS],
    )


def test_a_copy_has_fresh_owned_ids_and_moved_instants_everywhere() -> None:
    delta = -timedelta(seconds=97, microseconds=250000)  # lands on a whole second
    rows, audit = _template().copy(delta)
    values = dict(zip(COLUMNS, rows[0], strict=True))
    new_task, new_comment = values["task_id"], values["id"]
    assert new_task not in (TASK, COMMENT)
    assert new_comment not in (TASK, COMMENT, new_task)
    assert new_task.version == 4
    assert new_comment.version == 4
    assert values["author_id"] == AUTHOR  # not owned: kept
    assert values["created_at"] == AT + delta
    assert values["updated_at"] == AT + timedelta(minutes=5) + delta
    # In text, `to_jsonable`'s form of the moved instant (no fraction left, `Z`).
    assert values["body"] == f"see task {new_task} since 2026-03-02T09:28:38Z"
    assert isinstance(values["mentions"], copies.RawJson)
    assert values["mentions"] == f'["{new_task}","{AUTHOR}"]'
    ((_item, shift),) = audit
    assert shift.ids[TASK] == new_task


def test_copied_audit_rows_hash_like_the_audit_writer() -> None:
    template = _template()
    _, first = template.copy(timedelta(minutes=-3))
    _, second = template.copy(timedelta(seconds=-1))
    prev = GENESIS_HASH
    for seq, (item, shift) in enumerate([*first, *second], start=1):
        row = item.render(shift, seq, prev)
        assert row["seq"] == seq
        assert row["prev_hash"] == prev
        assert row["entity_id"] == shift.ids[TASK]
        assert row["timestamp"] == AT + shift.delta
        content = audit_writer.content(
            {
                **row,
                **{
                    key: json.loads(row[key])
                    for key in ("previous_state", "new_state", "changes", "metadata_")
                },
            }
        )
        assert content["new_state"]["at"] == (AT + shift.delta).isoformat()
        assert content["previous_state"]["assigned_to"] == str(AUTHOR)
        assert row["hash"] == chain_hash(prev, content)
        prev = row["hash"]
    assert first[0][1].ids[TASK] != second[0][1].ids[TASK]
