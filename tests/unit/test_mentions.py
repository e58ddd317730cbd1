"""Which `@username`s a comment mentions (pure)."""

from __future__ import annotations

import pytest

from opsflow.collaboration.service import mentioned_names


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("@dana can you look?", ["dana"]),
        ("thanks @Dana.", ["dana"]),
        ("cc @sam-support, @ops.lead and @sam-support again", ["sam-support", "ops.lead"]),
        ("mail bob@example.com or @@x or @ab", []),
        ("(@dana)\n@lee_1", ["dana", "lee_1"]),
        ("`@dana` in code is still a mention", ["dana"]),
    ],
)
def test_mentioned_names(text: str, names: list[str]) -> None:
    assert mentioned_names(text) == names


def test_at_most_fifty_mentions() -> None:
    text = " ".join(f"@user{n:03d}" for n in range(80))
    assert len(mentioned_names(text)) == 50
