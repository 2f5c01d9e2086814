"""The SQLite Merkle log: appends, proofs against the reference, checkpoints, fsck, bad input."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ailedger
from ailedger import InputError, LogError, NotFoundError, VerificationError, merkle
from ailedger._log.note import Checkpoint, open_checkpoint


def _cp(note: str) -> Checkpoint:
    return Checkpoint.parse(note[: note.rfind("\n\n") + 1])


def test_append_get_and_reference_proofs(ws: ailedger.Workspace) -> None:
    entries = [b"entry-%d" % i for i in range(300)]
    assert ws.log.append_many(entries[:1]) == [0]
    assert ws.log.append(entries[1]) == 1
    assert ws.log.append_many(entries[2:]) == list(range(2, 300))
    assert ws.log.size == 300
    assert ws.log.get(123) == entries[123]
    hashes = [merkle.leaf_hash(e) for e in entries]
    for n in (1, 2, 3, 7, 8, 9, 127, 128, 129, 255, 256, 257, 300):
        assert ws.log.root(n) == merkle.root_from_leaf_hashes(hashes[:n])
        for i in {0, n // 2, n - 1}:
            assert ws.log.inclusion_proof(i, n) == merkle.inclusion_proof(i, hashes[:n])
        for m in {1, n // 3 or 1, n - 1 or 1, n}:
            assert ws.log.consistency_proof(m, n) == merkle.consistency_proof(m, hashes[:n])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.lists(st.binary(max_size=16), max_size=20), min_size=1, max_size=8),
    data=st.data(),
)
def test_random_batches_match_reference(
    tmp_path: Path, batches: list[list[bytes]], data: st.DataObject
) -> None:
    import uuid

    w = ailedger.Workspace.init(tmp_path / uuid.uuid4().hex, name="p")
    try:
        all_entries: list[bytes] = []
        for b in batches:
            idx = w.log.append_many(b)
            assert idx == list(range(len(all_entries), len(all_entries) + len(b)))
            all_entries += b
        n = len(all_entries)
        assert w.log.root() == merkle.root(all_entries)
        if n:
            hashes = [merkle.leaf_hash(e) for e in all_entries]
            i = data.draw(st.integers(0, n - 1))
            size = data.draw(st.integers(i + 1, n))
            proof = w.log.inclusion_proof(i, size)
            merkle.verify_inclusion(hashes[i], i, size, proof, merkle.root(all_entries[:size]))
            m = data.draw(st.integers(1, n))
            merkle.verify_consistency(
                m, n, w.log.consistency_proof(m, n), w.log.root(m), w.log.root(n)
            )
        assert w.log.fsck().ok
    finally:
        w.close()


def test_checkpoint_signs_only_when_grown(ws: ailedger.Workspace) -> None:
    first = ws.log.checkpoint()
    assert ws.log.checkpoint() == first
    assert _cp(first).size == 0 and _cp(first).root == merkle.EMPTY_ROOT
    ws.log.append_many([b"a", b"b", b"c"])
    second = ws.log.checkpoint()
    assert second != first and ws.log.checkpoint() == second
    cp = open_checkpoint(second, ws.verifier)
    assert (cp.origin, cp.size, cp.root) == (ws.origin, 3, merkle.root([b"a", b"b", b"c"]))
    assert ws.log.checkpoint_sizes() == [0, 3]


def test_receipt_only_against_issued_checkpoints(ws: ailedger.Workspace) -> None:
    ws.log.append_many([b"x%d" % i for i in range(10)])
    ws.log.checkpoint()
    ws.log.append_many([b"y"])
    r = ws.receipt(3, size=10)
    res = ailedger.verify_receipt(r, b"x3", ws.verifier_key)
    assert res.checkpoint.size == 10
    with pytest.raises(NotFoundError, match="no checkpoint"):
        ws.receipt(3, size=7)
    latest = ailedger.verify_receipt(ws.receipt(10), b"y", ws.verifier_key)
    assert latest.checkpoint.size == 11
    with pytest.raises(VerificationError):
        ailedger.verify_receipt(r, b"x4", ws.verifier_key)


@pytest.mark.parametrize(
    "call",
    [
        lambda log: log.append(b"x" * (64 * 1024 + 1)),
        lambda log: log.append_many([b"ok", b"x" * (64 * 1024 + 1)]),
        lambda log: log.append_many([b"ok", "not bytes"]),
        lambda log: log.get(99),
        lambda log: log.get(-1),
        lambda log: log.inclusion_proof(5, 5),
        lambda log: log.inclusion_proof(0, 99),
        lambda log: log.consistency_proof(0, 3),
        lambda log: log.consistency_proof(4, 3),
        lambda log: log.root(99),
    ],
)
def test_bad_input_leaves_log_unchanged(ws: ailedger.Workspace, call) -> None:  # type: ignore[no-untyped-def]
    ws.log.append_many([b"a", b"b", b"c", b"d", b"e"])
    before = (ws.log.size, ws.log.root())
    with pytest.raises((InputError, NotFoundError)):
        call(ws.log)
    assert (ws.log.size, ws.log.root()) == before
    assert ws.log.fsck().ok


def test_max_entry_size_is_accepted(ws: ailedger.Workspace) -> None:
    assert ws.log.append(b"z" * (64 * 1024)) == 0
    assert ws.log.append(b"") == 1


def _tamper(path: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(path)
    db.execute(sql, args)
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("sql", "expect"),
    [
        ("UPDATE entries SET data = X'00' || substr(data, 2) WHERE idx = 17", "entry 17"),
        ("UPDATE entries SET leaf = zeroblob(32) WHERE idx = 40", "entry 40"),
        ("UPDATE nodes SET hash = zeroblob(32) WHERE id = (3 << 50) | 2", "node (3, 2)"),
        ("DELETE FROM nodes WHERE id = (1 << 50) | 5", "node (1, 5)"),
        ("DELETE FROM entries WHERE idx = 50", "entry 50 is missing"),
        ("UPDATE checkpoints SET root = zeroblob(32) WHERE size = 64", "checkpoint at size 64"),
        (
            "UPDATE checkpoints SET note = replace(note, '64', '65') WHERE size = 64",
            "checkpoint at size 64",
        ),
        ("INSERT INTO nodes VALUES ((9 << 50) | 7, zeroblob(32))", "unexpected"),
    ],
)
def test_fsck_detects_tampering(ws: ailedger.Workspace, sql: str, expect: str) -> None:
    ws.log.append_many([b"e%d" % i for i in range(64)])
    ws.log.checkpoint()
    ws.log.append_many([b"f%d" % i for i in range(36)])
    ws.log.checkpoint()
    assert ws.log.fsck().ok
    _tamper(ws.path / "log.sqlite", sql)
    rep = ws.log.fsck()
    assert not rep.ok
    assert any(expect in p for p in rep.problems), rep.problems


def test_every_flipped_entry_byte_is_detected(ws: ailedger.Workspace) -> None:
    ws.log.append_many([b"abc", b"defgh"])
    for pos in range(5):
        data = bytearray(b"defgh")
        data[pos] ^= 0x80
        _tamper(ws.path / "log.sqlite", "UPDATE entries SET data=? WHERE idx=1", bytes(data))
        assert not ws.log.fsck().ok
    _tamper(ws.path / "log.sqlite", "UPDATE entries SET data=? WHERE idx=1", b"defgh")
    assert ws.log.fsck().ok


def test_refuses_to_sign_over_a_rewritten_history(ws: ailedger.Workspace) -> None:
    ws.log.append_many([b"a", b"b"])
    ws.log.checkpoint()
    path = ws.path
    ws.close()
    # a rewritten interior hash would make every later checkpoint a split view
    _tamper(
        path / "log.sqlite", "UPDATE nodes SET hash=? WHERE id=1 << 50", merkle.leaf_hash(b"forged")
    )
    w2 = ailedger.Workspace.open(path)
    w2.log.append(b"c")
    with pytest.raises(LogError, match="refusing to sign"):
        w2.log.checkpoint()
    w2.close()


def _appender(path: str, tag: int, n: int) -> None:
    w = ailedger.Workspace.open(path)
    for i in range(n):
        w.log.append(b"p%d-%d" % (tag, i))
    w.close()


def test_two_processes_append_safely(ws: ailedger.Workspace) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_appender, args=(str(ws.path), t, 60)) for t in range(2)]
    for p in procs:
        p.start()
    ws.log.append_many([b"main-%d" % i for i in range(60)])
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert ws.log.size == 180
    rep = ws.log.fsck()
    assert rep.ok, rep.problems
    entries = sorted(ws.log.get(i) for i in range(180))
    assert entries == sorted(
        [b"p%d-%d" % (t, i) for t in range(2) for i in range(60)]
        + [b"main-%d" % i for i in range(60)]
    )
    assert _cp(ws.log.checkpoint()).root == merkle.root([ws.log.get(i) for i in range(180)])


def test_never_signs_two_trees_of_one_size_after_a_restore(tmp_path: Path) -> None:
    """Restoring an older log.sqlite must not let the log sign a second history."""
    import shutil

    w = ailedger.Workspace.init(tmp_path / "ws", name="r")
    w.log.append(b"a")
    w.log.checkpoint()
    w.close()
    shutil.copy(tmp_path / "ws" / "log.sqlite", tmp_path / "backup.sqlite")
    w = ailedger.Workspace.open(tmp_path / "ws")
    w.log.append_many([b"b", b"c"])
    signed = w.log.checkpoint()
    w.close()
    shutil.copy(tmp_path / "backup.sqlite", tmp_path / "ws" / "log.sqlite")
    w = ailedger.Workspace.open(tmp_path / "ws")
    w.log.append(b"B")
    with pytest.raises(LogError, match="already signed"):
        w.log.checkpoint()  # 2 entries, but size 3 was signed
    w.log.append(b"C")  # now a different history of size 3
    with pytest.raises(LogError, match="split view"):
        w.log.checkpoint()
    assert w.log.latest_checkpoint() != signed
    w.close()
