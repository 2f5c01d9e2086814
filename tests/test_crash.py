"""SIGKILL in the middle of appends: nothing acknowledged is lost, nothing half-written remains."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import ailedger
from ailedger import merkle
from ailedger._log.note import Checkpoint, open_checkpoint

from .conftest import PYTHON

CHILD = r"""
import sys, ailedger
ws = ailedger.Workspace.open(sys.argv[1])
i = 0
while True:
    if i % 3 == 0:
        batch = [b"batch-%d-%d" % (i, k) * 20 for k in range(200)]
        idx = ws.log.append_many(batch)
        print("B", idx[0], idx[-1], i, flush=True)
    else:
        e = b"single-%d" % i
        print("S", ws.log.append(e), i, flush=True)
    if i % 7 == 0:
        note = ws.log.checkpoint()
        print("C", note.encode().hex(), flush=True)
    i += 1
"""


def _expected(kind: str, i: int, k: int = 0) -> bytes:
    return b"batch-%d-%d" % (i, k) * 20 if kind == "B" else b"single-%d" % i


@pytest.mark.parametrize("kill_after", [5, 40, 120])
def test_sigkill_during_appends(tmp_path: Path, kill_after: int) -> None:
    ailedger.Workspace.init(tmp_path / "ws", name="crash").close()
    proc = subprocess.Popen(
        [PYTHON, "-c", CHILD, str(tmp_path / "ws")], stdout=subprocess.PIPE, env=dict(os.environ)
    )
    assert proc.stdout is not None
    acked: list[tuple[str, int, int, int]] = []
    notes: list[str] = []
    deadline = time.monotonic() + 120
    while len(acked) < kill_after and time.monotonic() < deadline:
        line = proc.stdout.readline().decode().split()
        if not line:
            break
        if line[0] == "B":
            acked.append(("B", int(line[1]), int(line[2]), int(line[3])))
        elif line[0] == "S":
            acked.append(("S", int(line[1]), int(line[1]), int(line[2])))
        else:
            notes.append(bytes.fromhex(line[1]).decode())
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of whatever it is doing
    proc.wait()
    assert len(acked) == kill_after

    ws = ailedger.Workspace.open(tmp_path / "ws")
    try:
        for kind, first, last, i in acked:
            for k, idx in enumerate(range(first, last + 1)):
                assert ws.log.get(idx) == _expected(kind, i, k)
        rep = ws.log.fsck()
        assert rep.ok, rep.problems
        ws.log.append(b"after the crash")
        final = open_checkpoint(ws.log.checkpoint(), ws.verifier)
        for note in notes:
            old = open_checkpoint(note, ws.verifier)
            if old.size:
                merkle.verify_consistency(
                    old.size,
                    final.size,
                    ws.log.consistency_proof(old.size, final.size),
                    old.root,
                    final.root,
                )
        assert isinstance(final, Checkpoint)
    finally:
        ws.close()
