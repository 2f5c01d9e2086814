"""Subprocess used by test_embedded: anchors checkpoints in a loop, printing
``size tx_hash`` after each receipt is returned (flushed, so a parent that
kills us knows exactly which receipts we were given)."""

from __future__ import annotations

import sys

from eth_account import Account

from ailedger import merkle
from ailedger._chain import CheckpointRegistryClient, EmbeddedBackend


def main() -> None:
    db, registry, key, origin, start, count = sys.argv[1:7]
    backend = EmbeddedBackend(db)
    reg = CheckpointRegistryClient(backend, registry, Account.from_key(key))
    log_id = bytes.fromhex(origin) if len(origin) == 64 else None
    assert log_id is not None
    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(int(start) + int(count) + 1)]
    size = int(start)
    for _ in range(int(count)):
        new = size + 1
        proof = merkle.consistency_proof(size, leaves[:new]) if size else []
        rec = reg.anchor(log_id, new, merkle.root_from_leaf_hashes(leaves[:new]), proof)
        size = new
        print(size, rec.tx_hash, flush=True)
    backend.close()


if __name__ == "__main__":
    main()
