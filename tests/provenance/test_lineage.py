"""Lineage index and graph, and verify_artifact on a workspace.

The log is built directly from statements shaped exactly as _provenance/types.py says
(dataset, SLSA training run, evaluation, prediction batch), so these tests do not depend
on the modules that normally write them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
import rfc8785

import ailedger
from ailedger import merkle
from ailedger._provenance import types as t
from ailedger._provenance.lineage import (
    DEPENDENCY,
    SUBJECT,
    WorkspaceSource,
    lineage,
    refs_of,
    update_index,
)
from ailedger._provenance.verify import verify_artifact

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:10:00Z"


@dataclass
class Built:
    root: Path  # folder holding ws/, data/, model.bin
    ws_path: Path
    model: Path
    data: Path
    model_digest: str
    manifest_digest: str
    leaves_digest: str
    base_digest: str
    idx: dict[str, int]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def canon(o: object) -> bytes:
    return rfc8785.dumps(o)


def dataset_statement(ws: ailedger.Workspace, name: str, folder: Path) -> tuple[dict, str]:  # type: ignore[type-arg]
    files = []
    for p in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix().encode()):
        if p.is_file():
            b = p.read_bytes()
            files.append(
                {"path": p.relative_to(folder).as_posix(), "size": len(b), "sha256": sha(b)}
            )
    manifest = canon({"version": 1, "mode": "files", "files": files})
    mdig = ws.blobs.put(manifest)
    root = merkle.root([canon(f) for f in files]).hex()
    pred = {
        "name": name,
        "fingerprint": {
            "algorithm": t.FINGERPRINT_ALG,
            "mode": "files",
            "root": root,
            "leaves": len(files),
            "files": len(files),
            "bytes": sum(f["size"] for f in files),  # type: ignore[misc]
        },
        "manifest": {
            "digest": t.digest(mdig),
            "size": len(manifest),
            "mediaType": "application/json",
        },
        "license": "CC-BY-4.0",
        "origin": str(folder),
        "preparation": ["none"],
        "schema": None,
        "consent": [],
        "registeredAt": T0,
    }
    st = ailedger.statement(
        [{"name": t.dataset_subject_name(name), "digest": t.digest(mdig)}], t.DATASET, pred
    )
    return st, mdig


def training_statement(
    ws_name: str, model: tuple[str, str], deps: list[tuple[str, str, str]], run_id: str
) -> dict:  # type: ignore[type-arg]
    pred = {
        "buildDefinition": {
            "buildType": t.TRAINING_BUILD_TYPE,
            "externalParameters": {"name": "train-" + run_id, "params": {"lr": 0.1}},
            "internalParameters": {"python": "3.11", "platform": "linux", "packages": {}},
            "resolvedDependencies": [
                {"name": n, "digest": t.digest(d), "annotations": {"kind": k}} for n, d, k in deps
            ],
        },
        "runDetails": {
            "builder": {"id": f"https://ailedger.dev/builder/{ws_name}"},
            "metadata": {"invocationId": run_id, "startedOn": T0, "finishedOn": T1},
            "byproducts": [
                {"name": "metrics", "annotations": {"metrics": {"loss": 0.2}}},
                {"name": "outcome", "annotations": {"status": "succeeded"}},
            ],
        },
    }
    return ailedger.statement([{"name": model[0], "digest": t.digest(model[1])}], t.TRAINING, pred)


def build(root: Path, name: str = "alice") -> Built:
    """dataset ← run → model.bin (base model from an earlier run), evaluation, predictions."""
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("x,y\n1,2\n3,4\n")
    (data / "sub" / "b.csv").write_text("x,y\n5,6\n")
    base = root / "base.bin"
    base.write_bytes(b"base model weights")
    model = root / "model.bin"
    model.write_bytes(b"\x00model weights\xff" * 100)
    ws = ailedger.Workspace.init(root / "ws", name=name)
    with ws:
        ds, mdig = dataset_statement(ws, "iris", data)
        bdig, mod = sha(base.read_bytes()), sha(model.read_bytes())
        i_ds = ws.record(ds)
        i_base = ws.record(training_statement(ws.name, ("base.bin", bdig), [], "r0"))
        ws.record(
            ailedger.statement(
                [{"name": "noise", "digest": t.digest(sha(b"x"))}], "https://example.com/other/v1"
            )
        )
        i_run = ws.record(
            training_statement(
                ws.name,
                ("model.bin", mod),
                [
                    ("dataset:iris", mdig, t.KIND_DATASET),
                    ("base.bin", bdig, t.KIND_MODEL),
                    ("git+https://example.com/repo@abc", sha(b"code"), t.KIND_CODE),
                ],
                "r1",
            )
        )
        ev = ailedger.statement(
            [{"name": "model.bin", "digest": t.digest(mod)}],
            t.EVALUATION,
            {
                "model": {"name": "model.bin", "digest": t.digest(mod)},
                "dataset": {"name": "dataset:iris", "digest": t.digest(mdig)},
                "metrics": {"accuracy": 0.97},
                "run": "r1",
                "evaluatedAt": T1,
            },
        )
        i_eval = ws.record(ev)
        leaves = [
            canon(
                {"input_sha256": sha(b"in%d" % k), "output_sha256": sha(b"out%d" % k), "time": T1}
            )
            for k in range(5)
        ]
        blob = b"".join(x + b"\n" for x in leaves)
        ldig = ws.blobs.put(blob)
        pr = ailedger.statement(
            [{"name": "predictions:b1", "digest": t.digest(ldig)}],
            t.PREDICTIONS,
            {
                "model": {"name": "model.bin", "digest": t.digest(mod)},
                "count": len(leaves),
                "root": merkle.root(leaves).hex(),
                "leaves": {
                    "digest": t.digest(ldig),
                    "size": len(blob),
                    "mediaType": "application/jsonl",
                },
                "from": T0,
                "to": T1,
            },
        )
        i_pred = ws.record(pr)
        ws.log.append(b"not a statement at all")  # must be skipped by the index
    return Built(
        root,
        root / "ws",
        model,
        data,
        mod,
        mdig,
        ldig,
        bdig,
        {"dataset": i_ds, "base": i_base, "run": i_run, "eval": i_eval, "pred": i_pred},
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    b = build(tmp_path_factory.mktemp("lineage"))
    with ailedger.Workspace.open(b.ws_path) as ws:
        ws.anchor()
    return b


@pytest.fixture
def copy(built: Built, tmp_path: Path) -> Built:
    """A private copy of the built folder, to tamper with."""
    dst = tmp_path / "copy"
    shutil.copytree(built.root, dst)
    return Built(
        dst,
        dst / "ws",
        dst / "model.bin",
        dst / "data",
        built.model_digest,
        built.manifest_digest,
        built.leaves_digest,
        built.base_digest,
        built.idx,
    )


# -- index ---------------------------------------------------------------------------


def test_index_is_incremental_and_skips_non_statements(copy: Built) -> None:
    with ailedger.Workspace.open(copy.ws_path) as ws:
        assert update_index(ws) == ws.log.size
        db = sqlite3.connect(ws.path / "provenance.sqlite")
        n = db.execute("SELECT count(*) FROM lineage_index").fetchone()[0]
        assert db.execute("SELECT indexed_size FROM lineage_meta").fetchone()[0] == ws.log.size
        # the raw entry contributes nothing; the model is a subject once and a dependency twice
        rows = db.execute(
            "SELECT role, log_index FROM lineage_index WHERE digest=? ORDER BY role, log_index",
            (copy.model_digest,),
        ).fetchall()
        assert rows == [
            (DEPENDENCY, copy.idx["eval"]),
            (DEPENDENCY, copy.idx["pred"]),
            (SUBJECT, copy.idx["run"]),
            (SUBJECT, copy.idx["eval"]),
        ]
        # a new statement is indexed by scanning only the new entry
        st = ailedger.statement([{"name": "m2", "digest": t.digest(sha(b"m2"))}], t.TRAINING, {})
        i = ws.record(st)
        assert update_index(ws) == i + 1
        assert db.execute("SELECT count(*) FROM lineage_index").fetchone()[0] == n + 1
        db.close()


def test_refs_of_rejects_garbage() -> None:
    for junk in (
        b"",
        b"{}",
        b"[1]",
        b'{"payloadType":"application/vnd.in-toto+json","payload":"!!"}',
    ):
        assert refs_of(junk) == []


# -- graph ---------------------------------------------------------------------------


def test_lineage_finds_everything(built: Built) -> None:
    with ailedger.Workspace.open(built.ws_path) as ws:
        g = lineage(ws, built.model)
        assert g.digest == built.model_digest and g.name == "model.bin"
        assert g.producers == [built.idx["run"]]
        assert g.referrers == [built.idx["eval"], built.idx["pred"]]
        run = g.nodes[built.idx["run"]]
        assert [d.ref.kind for d in run.dependencies] == ["dataset", "model", "code"]
        assert [d.producers for d in run.dependencies] == [
            [built.idx["dataset"]],
            [built.idx["base"]],
            [],
        ]
        assert set(g.nodes) == {built.idx[k] for k in ("dataset", "base", "run", "eval", "pred")}
        for n in g:
            assert n.signer == "alice" and n.keyids == (ws.keyid,)
            assert n.anchor is not None and "anchored at size" in n.anchor
        assert run.time == T1


def test_lineage_by_digest_and_by_dataset_name(built: Built) -> None:
    with ailedger.Workspace.open(built.ws_path) as ws:
        g = lineage(ws, "sha256:" + built.model_digest)
        assert g.producers == [built.idx["run"]]
        d = lineage(ws, "iris")
        assert d.digest == built.manifest_digest and d.producers == [built.idx["dataset"]]
        # the dataset is used by the run and the evaluation
        assert d.referrers == [built.idx["run"], built.idx["eval"]]
        p = lineage(ws, "sha256:" + built.leaves_digest)
        assert p.producers == [built.idx["pred"]]
        # predictions walk back to the model's run
        pred = p.nodes[built.idx["pred"]]
        assert pred.dependencies[0].producers == [built.idx["run"]]


def test_no_history_is_one_clear_error(built: Built, tmp_path: Path) -> None:
    f = tmp_path / "stranger.bin"
    f.write_bytes(b"never recorded")
    with ailedger.Workspace.open(built.ws_path) as ws:
        with pytest.raises(ailedger.NotFoundError, match=r"no history for stranger\.bin"):
            lineage(ws, f)
        with pytest.raises(ailedger.InputError, match="no such file, and no dataset"):
            lineage(ws, str(tmp_path / "missing"))
        with pytest.raises(ailedger.InputError, match="64 hex"):
            lineage(ws, "sha256:abc")


def test_source_survives_edited_index(copy: Built) -> None:
    """The index is a cache: a bogus row cannot invent history."""
    with ailedger.Workspace.open(copy.ws_path) as ws:
        update_index(ws)
        db = sqlite3.connect(ws.path / "provenance.sqlite")
        db.execute(
            "INSERT INTO lineage_index VALUES (?, 'subject', ?)", ("ab" * 32, copy.idx["run"])
        )
        db.commit()
        db.close()
        with pytest.raises(ailedger.NotFoundError):
            lineage(ws, "sha256:" + "ab" * 32)
        src = WorkspaceSource(ws)
        assert src.lookup("ab" * 32, SUBJECT) == [copy.idx["run"]]
        src.close()


# -- verify on a workspace ----------------------------------------------------------


def _failed(rep) -> list[tuple[int | None, str]]:  # type: ignore[no-untyped-def]
    return [(c.index, c.check) for c in rep.failures]


def test_verify_passes_offline_and_online(built: Built) -> None:
    with ailedger.Workspace.open(built.ws_path) as ws:
        off = verify_artifact(ws, built.model, offline=True)
        assert off.ok, off.summary()
        assert {c.check for c in off.checks} == {
            "artifact",
            "signature",
            "checkpoint",
            "inclusion",
            "data",
        }
        on = verify_artifact(ws, built.model)
        assert on.ok, on.summary()
        anchors = [c for c in on.checks if c.check == "anchor"]
        assert len(anchors) == 5 and all("anchored on chain" in c.detail for c in anchors)
        data = {c.index: c.detail for c in on.checks if c.check == "data"}
        assert "2 files" in data[built.idx["dataset"]]
        assert "5 prediction leaves" in data[built.idx["pred"]]
        # explicit chain + contracts, as a third party on the same chain would
        ext = verify_artifact(
            ws,
            built.model,
            chain=str(ws.path / "chain.sqlite"),
            contracts=ws.path / "deployment.json",
        )
        assert ext.ok, ext.summary()


def test_verify_model_changed_by_one_byte(copy: Built) -> None:
    b = bytearray(copy.model.read_bytes())
    b[7] ^= 1
    copy.model.write_bytes(bytes(b))
    with ailedger.Workspace.open(copy.ws_path) as ws:
        rep = verify_artifact(ws, copy.model, offline=True)
    assert not rep.ok
    assert _failed(rep) == [(None, "artifact")]
    assert "no history for model.bin" in rep.failures[0].detail


def test_verify_dataset_manifest_blob_modified(copy: Built) -> None:
    d = copy.manifest_digest
    p = copy.ws_path / "blobs" / "sha256" / d[:2] / d
    p.chmod(0o600)
    p.write_bytes(p.read_bytes().replace(b'"size":', b'"size": ', 1))
    with ailedger.Workspace.open(copy.ws_path) as ws:
        rep = verify_artifact(ws, copy.model, offline=True)
    assert _failed(rep) == [(copy.idx["dataset"], "data")]
    assert "modified" in rep.failures[0].detail
    assert "dataset" in rep.summary()


def test_verify_log_entry_tampered(copy: Built) -> None:
    i = copy.idx["eval"]
    db = sqlite3.connect(copy.ws_path / "log.sqlite")
    (data,) = db.execute("SELECT data FROM entries WHERE idx=?", (i,)).fetchone()
    env = json.loads(data)
    sig = bytearray(env["signatures"][0]["sig"].encode())
    sig[5] = ord("A") if sig[5] != ord("A") else ord("B")
    env["signatures"][0]["sig"] = sig.decode()
    db.execute("UPDATE entries SET data=? WHERE idx=?", (canon(env), i))
    db.commit()
    db.close()
    with ailedger.Workspace.open(copy.ws_path) as ws:
        rep = verify_artifact(ws, copy.model, offline=True)
    assert not rep.ok
    assert set(_failed(rep)) == {(i, "signature"), (i, "inclusion")}
    assert all(c.predicate_type == t.EVALUATION for c in rep.failures)


def test_verify_unanchored_checkpoint_fails_online(copy: Built) -> None:
    with ailedger.Workspace.open(copy.ws_path) as ws:
        ev = ailedger.statement(
            [{"name": "model.bin", "digest": t.digest(copy.model_digest)}],
            t.EVALUATION,
            {
                "model": {"name": "model.bin", "digest": t.digest(copy.model_digest)},
                "dataset": {"name": "dataset:iris", "digest": t.digest(copy.manifest_digest)},
                "metrics": {"accuracy": 0.5},
                "run": None,
                "evaluatedAt": T1,
            },
        )
        i = ws.record(ev)
        rep = verify_artifact(ws, copy.model)
        assert [(c.index, c.check) for c in rep.failures] == [(i, "anchor")]
        assert "not anchored yet" in rep.failures[0].detail
        assert verify_artifact(ws, copy.model, offline=True).ok
        ws.anchor()
        assert verify_artifact(ws, copy.model).ok


def test_verify_wrong_verifier_key_fails(built: Built) -> None:
    other = "ailedger.local/x-00000000+00000000+AQ=="
    with ailedger.Workspace.open(built.ws_path) as ws:
        rep = verify_artifact(ws, built.model, offline=True, verifier_key=other)
    assert (None, "log key") in _failed(rep)


def test_verify_rechecks_local_dataset_files(tmp_path: Path) -> None:
    """With the datasets module, a registered folder is re-fingerprinted: one row changed fails."""
    datasets = pytest.importorskip("ailedger._provenance.datasets")
    data = tmp_path / "train"
    data.mkdir()
    (data / "rows.csv").write_text("a,b\n1,2\n3,4\n")
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")
    with ailedger.Workspace.init(tmp_path / "ws", name="bob") as ws:
        rec = datasets.add_dataset(ws, data, name="train")
        ws.record(
            training_statement(
                ws.name,
                ("m.bin", sha(model.read_bytes())),
                [("dataset:train", rec.manifest_digest, t.KIND_DATASET)],
                "r9",
            )
        )
        rep = verify_artifact(ws, model, offline=True)
        assert rep.ok, rep.summary()
        assert any(c.check == "dataset files" and c.ok for c in rep.checks)
        assert any(c.check == "data" and "fingerprint root match" in c.detail for c in rep.checks)
        (data / "rows.csv").write_text("a,b\n1,2\n3,5\n")
        rep = verify_artifact(ws, model, offline=True)
        assert [(c.check, c.predicate_type) for c in rep.failures] == [("dataset files", t.DATASET)]
        assert "changed: rows.csv" in rep.failures[0].detail
        assert lineage(ws, "train").producers == [rec.index]


def test_end_to_end_with_the_real_writers(tmp_path: Path) -> None:
    """Statements written by tracking/predictions/datasets are walked and verified too."""
    tracking = pytest.importorskip("ailedger._provenance.tracking")
    predictions = pytest.importorskip("ailedger._provenance.predictions")
    data = tmp_path / "iris"
    data.mkdir()
    (data / "iris.csv").write_text("x,y\n1,0\n2,1\n")
    model = tmp_path / "clf.bin"
    model.write_bytes(b"classifier")
    with ailedger.Workspace.init(tmp_path / "ws", name="erin") as ws:
        with tracking.track("fit", params={"C": 1.0}, workspace=ws, strict=True) as run:
            run.use(data)
            run.log_model(model)
            run.log_evaluation(model, "iris", {"accuracy": 1.0})
        with predictions.PredictionLogger(ws, model) as pl:
            for k in range(3):
                pl.log({"x": k}, k % 2)
        ws.anchor()
        g = lineage(ws, model)
        kinds = sorted(g.nodes[i].kind for i in g.referrers)
        assert kinds == ["evaluation", "predictions"]
        (prod,) = g.producers
        assert [d.ref.kind for d in g.nodes[prod].dependencies if d.producers] == ["dataset"]
        rep = verify_artifact(ws, model)
        assert rep.ok, rep.summary()
        assert {c.check for c in rep.checks} >= {"signature", "inclusion", "anchor", "data"}


def test_dataset_named_like_a_local_folder(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ailedger verify iris` next to a folder ./iris means the dataset, not the folder."""
    from ailedger._provenance.bundle import export_bundle

    (tmp_path / "iris").mkdir()
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    with ailedger.Workspace.open(built.ws_path) as ws:
        assert lineage(ws, "iris").producers == [built.idx["dataset"]]
        rep = verify_artifact(ws, "iris", offline=True)
        assert rep.ok, rep.summary()
        assert rep.digest == built.manifest_digest
        assert export_bundle(ws, "iris")["artifact"]["digest"]["sha256"] == built.manifest_digest
        with pytest.raises(ailedger.InputError, match="is a directory and no dataset has that"):
            lineage(ws, "other")


def test_local_dataset_errors_fail_the_check(tmp_path: Path) -> None:
    """Only a missing source path skips the dataset-files check; any error fails it."""
    datasets = pytest.importorskip("ailedger._provenance.datasets")
    data = tmp_path / "recs"
    data.mkdir()
    (data / "rows.csv").write_text("a,b\n1,2\n3,4\n")
    with ailedger.Workspace.init(tmp_path / "ws", name="bob") as ws:
        datasets.add_dataset(ws, data, name="recs", records=True)
        rep = verify_artifact(ws, "recs", offline=True)
        assert rep.ok, rep.summary()
        assert any(c.check == "dataset files" and c.ok for c in rep.checks)
        # a file the records mode cannot parse: a failed check carrying the reason
        (data / "notes.bin").write_bytes(b"\x00\x01 not records")
        rep = verify_artifact(ws, "recs", offline=True)
        assert [c.check for c in rep.failures] == ["dataset files"], rep.summary()
        assert "cannot be re-fingerprinted" in rep.failures[0].detail
        assert "notes.bin" in rep.failures[0].detail
        (data / "notes.bin").unlink()
        # a symlink loop inside the folder
        (data / "loop").symlink_to(data / "loop")
        rep = verify_artifact(ws, "recs", offline=True)
        assert [c.check for c in rep.failures] == ["dataset files"], rep.summary()
        (data / "loop").unlink()
        # the folder gone from this machine: skipped, with a warning saying so
        shutil.move(data, tmp_path / "elsewhere")
        rep = verify_artifact(ws, "recs", offline=True)
        assert rep.ok, rep.summary()
        assert not any(c.check == "dataset files" for c in rep.checks)
        assert any("is not present on this machine" in w for w in rep.warnings)


def test_unregistered_dataset_dependency_fails(copy: Built) -> None:
    """A run that names a dataset the log never registered fails `lineage`; a file is a warning."""
    m = copy.root / "m2.bin"
    m.write_bytes(b"other weights")
    ghost = sha(b"ghost manifest")
    with ailedger.Workspace.open(copy.ws_path) as ws:
        i = ws.record(
            training_statement(
                ws.name,
                ("m2.bin", sha(m.read_bytes())),
                [("dataset:ghost", ghost, t.KIND_DATASET), ("notes.txt", sha(b"n"), t.KIND_FILE)],
                "r7",
            )
        )
        rep = verify_artifact(ws, m, offline=True)
    assert _failed(rep) == [(i, "lineage")]
    assert rep.failures[0].detail == (
        f"dataset dataset:ghost sha256:{ghost} has no registration in the log"
    )
    assert [(r.kind, r.name) for r in rep.unrecorded] == [
        (t.KIND_DATASET, "dataset:ghost"),
        (t.KIND_FILE, "notes.txt"),
    ]
    assert any("file notes.txt sha256:" in w and "no recorded history" in w for w in rep.warnings)


def test_shared_dataset_links_to_its_grant(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A dataset received under a grant has its recipient access statement as producer."""
    from ailedger import Workspace
    from ailedger._provenance import types as vocab
    from ailedger._provenance.lineage import WorkspaceSource, build_graph
    from ailedger._statements import intoto

    ws = Workspace.init(tmp_path / "lab", name="lab")
    d = "ab" * 32
    i = ws.record(intoto.statement(
        [{"name": f"dataset:sha256:{d}", "digest": {"sha256": d}}], vocab.DATA_ACCESS,
        {"role": "recipient", "dataset": {"root": "00" * 32, "files": 1, "bytes": 3},
         "provider": {"account": "0x" + "11" * 20, "keyid": "22" * 32, "node": "http://x"},
         "requester": {"account": ws.address.lower(), "keyid": ws.keyid},
         "agreement": {"chainId": 1337, "contract": "0x" + "33" * 20, "requestId": 3,
                       "offerId": 2, "purpose": "training", "expiry": 1767225600},
         "accessedAt": "2025-01-01T00:00:00.000000Z"},
    ))  # fmt: skip
    src = WorkspaceSource(ws)
    try:
        g = build_graph(src, d)
    finally:
        src.close()
    assert g.producers == [i]
    n = g.nodes[i]
    assert n.kind == "access" and n.time == "2025-01-01T00:00:00.000000Z"
    assert n.agreement == (
        "granted under request 3 of offer 2 ('training', until 2026-01-01T00:00:00Z)"
        f" by 0x{'11' * 20}"
    )
    ws.close()
