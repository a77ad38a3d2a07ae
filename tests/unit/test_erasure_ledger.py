"""The erasure ledger's pieces: id mentions in raw text, incoming-id drops, the outside copy."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from nextoffer.domain.privacy import customer_digest, id_tokens, mention_pattern
from nextoffer.ingest.erased import ErasedIds
from nextoffer.storage import FileStore, erasure_log

KEY = "k" * 40
AT = datetime(2026, 12, 6, tzinfo=UTC)


def test_an_id_is_mentioned_only_as_a_whole_token() -> None:
    pattern = mention_pattern(["C1", "id with space"])
    assert pattern.search('T9,C1,MOB-L,"2024-01-01T00:00:00Z"')
    assert pattern.search('{"customer_id": "C1"}')
    assert pattern.search("duplicate: customer_id C1 appears earlier")
    assert pattern.search('x,"id with space",y')
    assert not pattern.search("T9,C10,MOB-L")
    assert not pattern.search("XC1,Y")
    assert {"C1", "MOB-L"} <= id_tokens('T9,"C1",MOB-L')


def test_incoming_ids_are_hashed_and_dropped_when_erased() -> None:
    erased = ErasedIds(KEY, frozenset({customer_digest(KEY, "C1")}))
    frame = pd.DataFrame({"customer_id": [" C1", "C2", None, "C1"], "x": ["a", "b", "c", "d"]})
    assert erased.mask(frame).tolist() == [True, False, False, True]
    assert erased.in_text("T1,C1,oops") and not erased.in_text("T1,C11,oops")
    assert not erased.mask(pd.DataFrame({"product_id": ["C1"]})).any()


def test_the_outside_copy_is_private_append_only_and_mirrored(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first, second = customer_digest(KEY, "C1"), customer_digest(KEY, "C2")
    erasure_log.append_local(var, [first], AT)
    erasure_log.append_local(var, [second, "not a digest"], AT)
    path = erasure_log.log_path(var)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with path.open("a") as handle:
        handle.write("deadbeef")  # a line cut short by a crash
    assert erasure_log.read_local(var) == {first, second}
    assert "C1" not in path.read_text()
    store = FileStore(tmp_path / "backups")
    erasure_log.publish(store, [first, second], AT)
    erasure_log.publish(store, [first], AT)  # idempotent
    assert erasure_log.read_published(store) == {first, second}
