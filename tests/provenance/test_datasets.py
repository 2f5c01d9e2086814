"""Datasets: the DATASET statement and manifest, the registry, verify, membership proofs
(round trip and tampering), and the `ailedger data` CLI run as a user would."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rfc8785

import ailedger
from ailedger import InputError, NotFoundError, VerificationError, merkle
from ailedger._provenance import types as t
from ailedger._provenance.datasets import (
    PROOF_TYPE,
    DatasetRecord,
    add_dataset,
    check_member_proof,
    find_dataset,
    list_datasets,
    prove_member,
    verify_dataset,
)
from ailedger._statements import dsse

from ..conftest import PYTHON, cli_env


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ailedger.Workspace]:
    w = ailedger.Workspace.init(tmp_path_factory.mktemp("dsws") / "ws", name="t")
    yield w
    w.close()


def write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def statement_at(ws: ailedger.Workspace, index: int) -> dict[str, Any]:
    env = dsse.parse(ws.log.get(index))
    st: dict[str, Any] = json.loads(base64.b64decode(env["payload"]))
    return st


FILES = {"train/a.csv": b"x,y\n1,2\n3,4\n", "train/b.csv": b"x,y\n5,6\n", "README": b"hi\n"}


def test_add_records_statement_and_manifest(ws: ailedger.Workspace, tmp_path: Path) -> None:
    write(tmp_path / "iris", FILES)
    rec = add_dataset(
        ws,
        tmp_path / "iris",
        license="CC-BY-4.0",
        origin="https://example.org/iris",
        preparation=["dedup", "drop nulls"],
        consent=["agreement-17"],
    )
    assert isinstance(rec, DatasetRecord) and rec.created
    assert (rec.name, rec.mode, rec.leaves, rec.files, rec.version) == ("iris", "files", 3, 3, 1)
    manifest = ws.blobs.get(rec.manifest_digest)
    assert hashlib.sha256(manifest).hexdigest() == rec.manifest_digest
    m = json.loads(manifest)
    assert rfc8785.dumps(m) == manifest
    assert [f["path"] for f in m["files"]] == ["README", "train/a.csv", "train/b.csv"]
    leaves = [rfc8785.dumps({k: f[k] for k in ("path", "sha256", "size")}) for f in m["files"]]
    assert merkle.root(leaves).hex() == rec.root

    st = statement_at(ws, rec.index)
    assert st["predicateType"] == t.DATASET
    assert st["subject"] == [{"name": "dataset:iris", "digest": {"sha256": rec.manifest_digest}}]
    p = st["predicate"]
    assert set(p) == {
        "name", "fingerprint", "manifest", "license", "origin", "preparation", "schema",
        "consent", "registeredAt",
    }  # fmt: skip
    assert p["fingerprint"] == {
        "algorithm": "rfc9162-sha256",
        "mode": "files",
        "root": rec.root,
        "leaves": 3,
        "files": 3,
        "bytes": sum(len(v) for v in FILES.values()),
    }
    assert p["manifest"] == {
        "digest": {"sha256": rec.manifest_digest},
        "size": len(manifest),
        "mediaType": "application/json",
    }
    assert (p["license"], p["origin"], p["preparation"], p["consent"]) == (
        "CC-BY-4.0",
        "https://example.org/iris",
        ["dedup", "drop nulls"],
        ["agreement-17"],
    )
    assert p["schema"] == {"format": "csv", "columns": ["x", "y"], "source": "train/a.csv"}
    assert p["registeredAt"].endswith("Z")
    assert find_dataset(ws, "iris") == rec
    assert find_dataset(ws, "no-such") is None


def test_versions_latest_wins(ws: ailedger.Workspace, tmp_path: Path) -> None:
    d = tmp_path / "v"
    write(d, {"a": b"1"})
    v1 = add_dataset(ws, d, name="ver")
    same = add_dataset(ws, d, name="ver")
    assert not same.created and same.index == v1.index and same.version == 1
    write(d, {"a": b"2"})
    v2 = add_dataset(ws, d, name="ver")
    assert v2.created and v2.version == 2 and v2.index > v1.index and v2.root != v1.root
    lic = add_dataset(ws, d, name="ver", license="MIT")  # same data, new metadata
    assert lic.created and lic.version == 3 and lic.root == v2.root
    found = find_dataset(ws, "ver")
    assert found is not None and found.index == lic.index
    assert [r.version for r in list_datasets(ws, "ver")] == [1, 2, 3]


def test_bad_names_and_paths(ws: ailedger.Workspace, tmp_path: Path) -> None:
    write(tmp_path, {"f": b"1"})
    with pytest.raises(InputError, match="invalid dataset name"):
        add_dataset(ws, tmp_path / "f", name=" x")
    with pytest.raises(InputError, match="no such file"):
        add_dataset(ws, tmp_path / "missing")
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        verify_dataset(ws, "nope", tmp_path)
    with pytest.raises(NotFoundError, match="no dataset named"):
        prove_member(ws, "nope", "f")


def test_verify_lists_changes(ws: ailedger.Workspace, tmp_path: Path) -> None:
    d = tmp_path / "d"
    write(d, {"keep": b"k", "edit": b"e", "gone": b"g"})
    add_dataset(ws, d, name="diff")
    assert verify_dataset(ws, "diff", d).ok
    (d / "edit").write_bytes(b"E")
    (d / "gone").unlink()
    (d / "new").write_bytes(b"n")
    diff = verify_dataset(ws, "diff", d)
    assert not diff.ok
    assert (diff.changed, diff.added, diff.removed) == (("edit",), ("new",), ("gone",))
    assert diff.records_added is None


def test_verify_records_counts(ws: ailedger.Workspace, tmp_path: Path) -> None:
    d = tmp_path / "r"
    rows = b"".join(b"%d,%d\n" % (i, i * i) for i in range(100))
    write(d, {"t.csv": b"n,sq\n" + rows})
    rec = add_dataset(ws, d, name="rows", records=True)
    assert (rec.mode, rec.leaves) == ("records", 100)
    st = statement_at(ws, rec.index)
    assert st["predicate"]["schema"] == {"format": "csv", "columns": ["n", "sq"], "source": "t.csv"}
    (d / "t.csv").write_bytes(b"n,sq\n" + rows.replace(b"7,49\n", b"7,50\n"))
    diff = verify_dataset(ws, "rows", d)
    assert diff.changed == ("t.csv",)
    assert (diff.records_added, diff.records_removed) == (1, 1)


# -- membership proofs --------------------------------------------------------------------


@pytest.fixture(scope="module")
def proved(ws: ailedger.Workspace, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("p") / "data"
    write(d, {"img/1.png": b"one", "img/2.png": b"two", "img/3.png": b"three"})
    r = tmp_path_factory.mktemp("p") / "recs"
    write(r, {"a.jsonl": b'{"q":1}\n{"q":2}\n', "b.jsonl": b'{"q":3}\n'})
    add_dataset(ws, d, name="imgs")
    add_dataset(ws, r, name="lines", records=True)
    return {
        "files": prove_member(ws, "imgs", "img/2.png"),
        "byfs": prove_member(ws, "imgs", str(d / "img" / "3.png")),
        "records": prove_member(ws, "lines", record=2),
    }


def test_proof_round_trip(ws: ailedger.Workspace, proved: dict[str, Any]) -> None:
    doc = json.loads(proved["files"])
    assert doc["type"] == PROOF_TYPE and doc["dataset"] == "imgs" and doc["mode"] == "files"
    assert doc["receipt"].startswith("c2sp.org/tlog-proof@v1")
    r = check_member_proof(proved["files"], verifier_key=ws.verifier_key, file_bytes=b"two")
    assert (r.dataset, r.path, r.leaf_index, r.leaves) == ("imgs", "img/2.png", 1, 3)
    rec = find_dataset(ws, "imgs")
    assert rec is not None and (r.index, r.root) == (rec.index, rec.root)
    r3 = check_member_proof(proved["byfs"], verifier_key=ws.verifier_key, file_bytes=b"three")
    assert r3.path == "img/3.png"
    rr = check_member_proof(
        proved["records"], verifier_key=ws.verifier_key, file_bytes=b'{"q":3}\n'
    )
    assert (rr.mode, rr.leaf, rr.leaf_index, rr.path) == ("records", b'{"q":3}', 2, "b.jsonl")


def _edit(text: str, fn: Any) -> str:
    d = json.loads(text)
    fn(d)
    return json.dumps(d)


def _flip_hex(h: str) -> str:
    return ("0" if h[0] != "0" else "1") + h[1:]


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda d: d.update(root=_flip_hex(d["root"])), "differ from the signed statement"),
        (lambda d: d["leaf"].update(index=0), "leaf is not in the dataset root"),
        (
            lambda d: d["leaf"].update(
                data=base64.b64encode(
                    base64.b64decode(d["leaf"]["data"]).replace(b"img/2", b"img/9")
                ).decode()
            ),
            "leaf is not in the dataset root",
        ),
        (lambda d: d["inclusionProof"].pop(), "leaf is not in the dataset root"),
        (lambda d: d.update(leaves=4), "differ from the signed statement"),
        (lambda d: d.update(dataset="other"), "subject is not this dataset"),
        (lambda d: d.update(statementIndex=d["statementIndex"] + 1), "receipt is for entry"),
        (
            lambda d: d.update(
                entry=base64.b64encode(b"{}" + base64.b64decode(d["entry"])).decode()
            ),
            "receipt does not verify",
        ),
        (lambda d: d.update(receipt=d["receipt"].replace("index", "index 9 ")), "receipt"),
        (lambda d: d.pop("entry"), "field 'entry' is missing"),
        (lambda d: d.update(type="x"), "not a dataset membership proof"),
    ],
)
def test_edited_proof_fails_closed(
    ws: ailedger.Workspace, proved: dict[str, Any], edit: Any, why: str
) -> None:
    with pytest.raises(VerificationError, match=why):
        check_member_proof(_edit(proved["files"], edit), verifier_key=ws.verifier_key)


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda d: d["leaf"].update(path="a.jsonl"), "is not the manifest's file 'b.jsonl'"),
        (lambda d: d["leaf"].update(path="../../etc/passwd"), "is not the manifest's file"),
        (lambda d: d["leaf"].update(record=5), "leaf record 5 is not its position 0"),
        (lambda d: d["leaf"].pop("record"), "leaf record None is not its position 0"),
        (
            lambda d: d.update(
                manifestContent=base64.b64encode(
                    base64.b64decode(d["manifestContent"]).replace(b'"records":1', b'"records":2')
                ).decode()
            ),
            "not the manifest the signed statement names",
        ),
        (lambda d: d.update(manifestContent="!!"), "manifestContent is not base64"),
    ],
)
def test_records_proof_checks_path_and_record(
    ws: ailedger.Workspace, proved: dict[str, Any], edit: Any, why: str
) -> None:
    good = check_member_proof(proved["records"], verifier_key=ws.verifier_key)
    assert (good.path, good.record, good.leaf_index) == ("b.jsonl", 0, 2)
    with pytest.raises(VerificationError, match=why):
        check_member_proof(_edit(proved["records"], edit), verifier_key=ws.verifier_key)


def test_records_proof_without_manifest_drops_path_and_record(
    ws: ailedger.Workspace, proved: dict[str, Any]
) -> None:
    def strip(d: dict[str, Any]) -> None:
        d.pop("manifestContent")
        d["leaf"].update(path="anything", record=99)  # unbacked: not returned

    r = check_member_proof(_edit(proved["records"], strip), verifier_key=ws.verifier_key)
    assert (r.path, r.record, r.leaf_index, r.leaf) == ("", None, 2, b'{"q":3}')
    f = check_member_proof(proved["files"], verifier_key=ws.verifier_key)
    assert "manifestContent" not in json.loads(proved["files"]) and f.record is None


def test_proof_wrong_bytes_and_wrong_key(
    ws: ailedger.Workspace, proved: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(VerificationError, match=r"file's bytes are not those of img/2\.png"):
        check_member_proof(proved["files"], verifier_key=ws.verifier_key, file_bytes=b"tw0")
    with pytest.raises(VerificationError, match="record's bytes differ"):
        check_member_proof(proved["records"], verifier_key=ws.verifier_key, file_bytes=b"{}")
    other = ailedger.Workspace.init(tmp_path / "other", name="mallory")
    try:
        with pytest.raises(VerificationError, match="receipt does not verify"):
            check_member_proof(proved["files"], verifier_key=other.verifier_key)
    finally:
        other.close()
    with pytest.raises(VerificationError, match="not JSON"):
        check_member_proof(b"\x00garbage", verifier_key=ws.verifier_key)


def test_prove_bad_requests(ws: ailedger.Workspace, proved: dict[str, Any]) -> None:
    with pytest.raises(NotFoundError, match="not a file of this dataset"):
        prove_member(ws, "imgs", "img/9.png")
    with pytest.raises(InputError, match="use --record N"):
        prove_member(ws, "lines", "a.jsonl")
    with pytest.raises(InputError, match="prove a FILE"):
        prove_member(ws, "imgs", record=0)
    with pytest.raises(InputError, match=r"outside 0\.\.2"):
        prove_member(ws, "lines", record=3)


# -- CLI ----------------------------------------------------------------------------------


def run(
    home: Path, *args: str, ok: bool = True, code: int | None = None
) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run(
        [PYTHON, "-m", "ailedger", *args], env=cli_env(home), capture_output=True, timeout=120
    )
    if ok:
        assert p.returncode == 0, p.stderr.decode()
    elif code is not None:
        assert p.returncode == code, (p.stdout, p.stderr)
    else:
        assert p.returncode != 0, p.stdout.decode()
        err = p.stderr.decode()
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert err.startswith("ailedger: error: ")
    return p


def test_cli_round_trip(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    run(home, "init", "--name", "cli")
    d = tmp_path / "ds"
    write(d, {"a.jsonl": b'{"k":1}\n{"k":2}\n', "sub/b.bin": b"bb"})
    out = run(home, "data", "add", str(d), "--name", "ds", "--license", "MIT", "--prep", "cleaned")
    text = out.stdout.decode()
    assert "registered ds version 1" in text and "statement: 0" in text
    assert "files/s" in text and "cache hits" in text and "leaves:    2" in text
    assert "ds\tv1\tstatement 0\tfiles" in run(home, "data", "list").stdout.decode()
    assert "ok:" in run(home, "data", "verify", "ds", str(d)).stdout.decode()

    proof = run(home, "data", "prove", "ds", "sub/b.bin").stdout
    pf = tmp_path / "proof.json"
    pf.write_bytes(proof)
    ok = run(home, "data", "check-proof", str(pf), "--file", str(d / "sub" / "b.bin"))
    assert b"OK: file sub/b.bin is leaf 1 of 2 in dataset ds" in ok.stdout
    vk = run(home, "log", "verifier-key").stdout.decode().strip()
    elsewhere = run(tmp_path / "nohome", "data", "check-proof", str(pf), "--verifier-key", vk)
    assert b"OK:" in elsewhere.stdout

    (d / "sub" / "b.bin").write_bytes(b"BB")
    os.remove(d / "a.jsonl")
    bad = run(home, "data", "verify", "ds", str(d), ok=False, code=1)
    assert b"changed: sub/b.bin" in bad.stdout and b"removed: a.jsonl" in bad.stdout
    assert b"FAIL:" in bad.stdout

    r = tmp_path / "rec"
    write(r, {"t.csv": b"a,b\n1,2\n3,4\n"})
    run(home, "data", "add", str(r), "--records")
    rp = run(home, "data", "prove", "rec", "--record", "1").stdout
    pr = tmp_path / "rp.json"
    pr.write_bytes(rp)
    row = tmp_path / "row"
    row.write_bytes(b"3,4\n")
    assert b"OK: record 1" in run(home, "data", "check-proof", str(pr), "--file", str(row)).stdout

    # One-line errors, non-zero exits, no tracebacks.
    e = run(home, "data", "check-proof", str(pf), "--file", str(d / "sub" / "b.bin"), ok=False)
    assert b"membership proof: the file's bytes" in e.stderr
    assert (
        b"no dataset named 'nope'" in run(home, "data", "verify", "nope", str(d), ok=False).stderr
    )
    assert b"no such file" in run(home, "data", "add", str(tmp_path / "missing"), ok=False).stderr
    loop = tmp_path / "loop"
    loop.mkdir()
    (loop / "me").symlink_to(loop)
    assert b"folder reached twice" in run(home, "data", "add", str(loop), ok=False).stderr
    assert (
        b"records mode reads only" in run(home, "data", "add", str(d), "--records", ok=False).stderr
    )
    assert b"pass either FILE or --record N" in run(home, "data", "prove", "ds", ok=False).stderr
    junk = tmp_path / "junk.json"
    junk.write_text('{"type": "nope"}')
    assert (
        b"not a dataset membership proof"
        in run(home, "data", "check-proof", str(junk), ok=False).stderr
    )
    assert (
        b"verifier key"
        in run(home, "data", "check-proof", str(pf), "--verifier-key", "x+y+z", ok=False).stderr
    )


def test_workspace_inside_dataset_is_left_out(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write(root, {"data.csv": b"a\n1\n"})
    w = ailedger.Workspace.init(root / ".ailedger", name="inside")
    try:
        rec = add_dataset(w, root)
        assert (rec.name, rec.files) == ("proj", 1)
        assert verify_dataset(w, "proj", root).ok  # the log grew; the data did not change
    finally:
        w.close()
