"""Prediction batches: statements, roots vs ailedger.merkle, proofs and their tampering."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

import ailedger
from ailedger import merkle
from ailedger._provenance import types as ty
from ailedger._provenance.predictions import (
    PredictionLogger,
    check_prediction_proof,
    find_prediction,
    leaf_bytes,
    prediction_proof,
    value_sha256,
)

from ..conftest import PYTHON, cli_env

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Any:
    w = ailedger.Workspace.init(tmp_path_factory.mktemp("pred") / "ws", name="p")
    # entry 0 is something other than a predictions batch
    w.record(ailedger.statement([{"digest": {"sha256": "0" * 64}}], "https://example.com/x/v1"))
    yield w
    w.close()


@pytest.fixture(scope="module")
def model(ws: ailedger.Workspace) -> Path:
    m = ws.path.parent / "model.bin"
    m.write_bytes(b"a model")
    return m


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def batch_statement(ws: ailedger.Workspace, index: int) -> dict[str, Any]:
    s, _ = ailedger.verify_envelope(ws.log.get(index), ws.trusted_keys())
    return s


def test_value_hashing() -> None:
    np = pytest.importorskip("numpy")
    assert value_sha256(b"abc") == sha(b"abc") == value_sha256(bytearray(b"abc"))
    assert value_sha256("é") == sha("é".encode())
    assert value_sha256({"b": 1, "a": [1.5, None]}) == sha(b'{"a":[1.5,null],"b":1}')
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert value_sha256(a) == sha(b"ndarray:<f4:2,3\n" + a.tobytes())
    assert value_sha256(a) != value_sha256(a.reshape(3, 2)) != value_sha256(a.astype(np.float64))
    assert value_sha256(a.T) == sha(b"ndarray:<f4:3,2\n" + np.ascontiguousarray(a.T).tobytes())
    with pytest.raises(ailedger.InputError, match="cannot hash a object"):
        value_sha256(object())


def test_leaf_bytes_is_rfc8785() -> None:
    i, o, t = "a" * 64, "b" * 64, "2026-01-01T00:00:00.000001Z"
    assert leaf_bytes(i, o, t) == rfc8785.dumps({"time": t, "output_sha256": o, "input_sha256": i})


def test_batches_statements_and_roots(ws: ailedger.Workspace, model: Path) -> None:
    inputs = [f"x{i}".encode() for i in range(25)]
    with PredictionLogger(ws, model, batch_size=10) as log:
        refs = [log.log(x, {"label": i % 3}) for i, x in enumerate(inputs)]
        assert log.pending == 5 and len(log.batches) == 2
        assert refs[24].index is None
    assert len(log.batches) == 3 and log.pending == 0
    assert [(r.batch, r.position) for r in refs[9:12]] == [(0, 9), (1, 0), (1, 1)]
    assert refs[0].index == log.batches[0] and refs[24].index == log.batches[2]
    for b, index in enumerate(log.batches):
        s = batch_statement(ws, index)
        assert s["predicateType"] == ty.PREDICTIONS
        p = s["predicate"]
        blob = ws.blobs.get(p["leaves"]["digest"]["sha256"])
        leaves = blob.split(b"\n")[:-1]
        assert s["subject"] == [{"name": s["subject"][0]["name"], "digest": {"sha256": sha(blob)}}]
        assert s["subject"][0]["name"].startswith("predictions:")
        assert s["subject"][0]["name"].endswith(f"-{b}")
        assert p["model"] == {"name": "model.bin", "digest": {"sha256": sha(b"a model")}}
        assert p["count"] == len(leaves) == (10 if b < 2 else 5)
        assert p["root"] == merkle.root(leaves).hex()
        assert p["leaves"] == {
            "digest": {"sha256": sha(blob)},
            "size": len(blob),
            "mediaType": "application/jsonl",
        }
        assert TIME.fullmatch(p["from"]) and TIME.fullmatch(p["to"]) and p["from"] <= p["to"]
        for pos, leaf in enumerate(leaves):
            d = json.loads(leaf)
            assert rfc8785.dumps(d) == leaf
            i = b * 10 + pos
            assert d["input_sha256"] == sha(inputs[i]) == refs[i].input_sha256
            assert d["output_sha256"] == sha(rfc8785.dumps({"label": i % 3}))
            assert TIME.fullmatch(d["time"])
    with pytest.raises(ailedger.InputError, match="closed"):
        log.log(b"late", b"x")


def test_model_by_digest_and_bad_arguments(ws: ailedger.Workspace, tmp_path: Path) -> None:
    h = "c" * 64
    lg = PredictionLogger(ws, f"sha256:{h}")
    assert lg.model == {"name": f"sha256:{h}", "digest": {"sha256": h}}
    assert PredictionLogger(ws, h, name="m").model == {"name": "m", "digest": {"sha256": h}}
    assert lg.flush() is None  # nothing pending: nothing recorded
    with pytest.raises(ailedger.InputError, match="no such file"):
        PredictionLogger(ws, tmp_path / "missing.bin")
    with pytest.raises(ailedger.InputError, match="batch_size"):
        PredictionLogger(ws, h, batch_size=0)
    with pytest.raises(ailedger.InputError, match="64 lowercase hex"):
        lg.log_hashes("zz", h)


def test_ledger_error_keeps_batch_pending(
    ws: ailedger.Workspace, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lg = PredictionLogger(ws, model, batch_size=100)
    lg.log(b"1", b"2")
    monkeypatch.setattr(ws, "record", lambda s: (_ for _ in ()).throw(ailedger.LogError("full")))
    with pytest.raises(ailedger.LogError):
        lg.flush()
    assert lg.pending == 1
    monkeypatch.undo()
    assert lg.flush() is not None and lg.pending == 0


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=1, max_value=40), st.data())
def test_proof_round_trip(ws: ailedger.Workspace, model: Path, n: int, data: st.DataObject) -> None:
    lg = PredictionLogger(ws, model, batch_size=n)
    refs = [lg.log(f"in{i}", f"out{i}") for i in range(n)]  # exactly one full batch: flushed
    pos = data.draw(st.integers(min_value=0, max_value=n - 1))
    assert refs[pos].index is not None
    doc = prediction_proof(ws, refs[pos].index, pos)
    res = check_prediction_proof(
        doc, verifier_key=ws.verifier_key, input=f"in{pos}", output=f"out{pos}"
    )
    assert (res.batch_index, res.position) == (refs[pos].index, pos)
    assert res.leaf["input_sha256"] == sha(f"in{pos}".encode())
    assert res.model["digest"] == {"sha256": sha(b"a model")}


@pytest.fixture(scope="module")
def proof_doc(ws: ailedger.Workspace, model: Path) -> dict[str, Any]:
    with PredictionLogger(ws, model) as lg:
        for i in range(7):
            ref = lg.log(f"q{i}".encode(), f"a{i}".encode())
            if i == 4:
                mine = ref
    doc: dict[str, Any] = json.loads(mine.proof())
    return doc


def test_proof_ok(ws: ailedger.Workspace, proof_doc: dict[str, Any]) -> None:
    res = check_prediction_proof(
        json.dumps(proof_doc), verifier_key=ws.verifier_key, input=b"q4", output=b"a4"
    )
    assert res.position == 4 and res.origin == ws.origin


def tampered(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    d = json.loads(json.dumps(doc))
    obj = d
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value
    return d


def edited_leaf(doc: dict[str, Any]) -> str:
    d = json.loads(doc["leaf"])
    d["output_sha256"] = sha(b"something else")
    return rfc8785.dumps(d).decode()


def edited_entry(doc: dict[str, Any]) -> str:
    env = json.loads(doc["batch"]["entry"])
    payload = json.loads(base64.b64decode(env["payload"]))
    payload["predicate"]["count"] += 1
    env["payload"] = base64.b64encode(rfc8785.dumps(payload)).decode()
    return rfc8785.dumps(env).decode()


@pytest.mark.parametrize(
    ("how", "needle"),
    [
        ("leaf", "not in the signed batch root"),
        ("position", "not in the signed batch root"),
        ("count", "signed batch has 7"),
        ("inclusion", "not in the signed batch root"),
        ("entry", "receipt"),
        ("index", "receipt is for entry"),
        ("receipt", "receipt"),
        ("format", "not a prediction proof"),
        ("missing", "field 'leaf'"),
        ("input", "given input does not match"),
        ("output", "given output does not match"),
        ("key", "receipt"),
        ("badkey", "bad verifier key"),
        ("json", "not valid JSON"),
    ],
)
def test_proof_tampering_fails_closed(
    ws: ailedger.Workspace, proof_doc: dict[str, Any], tmp_path: Path, how: str, needle: str
) -> None:
    d, vk = proof_doc, ws.verifier_key
    kw: dict[str, Any] = {}
    doc: Any = d
    if how == "leaf":
        doc = tampered(d, ("leaf",), edited_leaf(d))
    elif how == "position":
        doc = tampered(d, ("position",), 3)
    elif how == "count":
        doc = tampered(d, ("count",), 8)
    elif how == "inclusion":
        doc = tampered(d, ("inclusion", 0), base64.b64encode(b"\x00" * 32).decode())
    elif how == "entry":
        doc = tampered(d, ("batch", "entry"), edited_entry(d))
    elif how == "index":
        doc = tampered(d, ("batch", "index"), d["batch"]["index"] + 1)
    elif how == "receipt":
        doc = tampered(d, ("receipt",), d["receipt"].replace("c2sp.org", "c2sp.org "))
    elif how == "format":
        doc = tampered(d, ("format",), "something/v9")
    elif how == "missing":
        doc = {k: v for k, v in d.items() if k != "leaf"}
    elif how == "input":
        kw["input"] = b"q5"
    elif how == "output":
        kw["output"] = b"a5"
    elif how == "key":
        other = ailedger.Workspace.init(tmp_path / "other", name="o")
        vk = other.verifier_key
        other.close()
    elif how == "badkey":
        vk = "not a key"
    elif how == "json":
        doc = "{"
    with pytest.raises(ailedger.VerificationError, match=needle):
        check_prediction_proof(
            doc if isinstance(doc, str) else json.dumps(doc), verifier_key=vk, **kw
        )


def test_find_prediction(ws: ailedger.Workspace, tmp_path: Path) -> None:
    m = tmp_path / "m2.bin"
    m.write_bytes(b"model two")
    with PredictionLogger(ws, m, batch_size=3) as lg:
        for i in range(5):
            lg.log(f"in{i}", f"out{i}")
    index, pos = find_prediction(ws, sha(b"model two"), input_sha256=sha(b"in3"))
    assert (index, pos) == (lg.batches[1], 0)
    with pytest.raises(ailedger.NotFoundError, match="no logged prediction"):
        find_prediction(ws, sha(b"model two"), input_sha256=sha(b"in3"), output_sha256=sha(b"x"))
    with pytest.raises(ailedger.NotFoundError, match="no predictions of model"):
        find_prediction(ws, "d" * 64, input_sha256=sha(b"in3"))
    with pytest.raises(ailedger.InputError, match="outside batch"):
        prediction_proof(ws, lg.batches[1], 2)
    with pytest.raises(ailedger.InputError, match="not a predictions batch"):
        prediction_proof(ws, 0, 0)


# -- CLI ------------------------------------------------------------------------------


def cli(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PYTHON, "-m", "ailedger", *args],
        env=cli_env(home),
        capture_output=True,
        timeout=120,
        cwd=cwd,
    )


def one_line_error(p: subprocess.CompletedProcess[bytes]) -> str:
    err = p.stderr.decode()
    assert p.returncode != 0 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("ailedger: error: ")
    return err


def test_cli_prediction_proof_and_check(ws: ailedger.Workspace, tmp_path: Path) -> None:
    m = tmp_path / "cli-model.bin"
    m.write_bytes(b"cli model")
    with PredictionLogger(ws, m, batch_size=4) as lg:
        for i in range(6):
            lg.log(f"img{i}".encode(), f"cat{i}".encode())
    (tmp_path / "in.bin").write_bytes(b"img5")
    (tmp_path / "out.bin").write_bytes(b"cat5")
    (tmp_path / "wrong.bin").write_bytes(b"dog")
    home = ws.path
    p = cli(home, "prediction", "proof", str(m), "--input", "in.bin", "-o", "p.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["batch"]["index"] == lg.batches[1] and doc["position"] == 1
    p2 = cli(home, "prediction", "proof", str(lg.batches[1]), "--position", "1")
    assert p2.returncode == 0 and json.loads(p2.stdout) == doc | {"receipt": doc["receipt"]}
    nowhere = tmp_path / "nowhere"
    ok = cli(
        nowhere,
        "prediction",
        "check-proof",
        "p.json",
        "--verifier-key",
        ws.verifier_key,
        "--input",
        "in.bin",
        "--output",
        "out.bin",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    out = ok.stdout.decode()
    assert out.startswith(f"OK: prediction 1 of batch entry {lg.batches[1]} is in {ws.origin}")
    assert f"input sha256:  {sha(b'img5')} (matches)" in out
    err = one_line_error(
        cli(home, "prediction", "check-proof", "p.json", "--output", "wrong.bin", cwd=tmp_path)
    )
    assert "given output does not match" in err
    err = one_line_error(cli(nowhere, "prediction", "check-proof", "p.json", cwd=tmp_path))
    assert "--verifier-key" in err
    (tmp_path / "bad.json").write_text(json.dumps(tampered(doc, ("leaf",), edited_leaf(doc))))
    err = one_line_error(cli(home, "prediction", "check-proof", "bad.json", cwd=tmp_path))
    assert "not in the signed batch root" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["prediction", "proof", "0"], "--position"),
        (["prediction", "proof", "0", "--position", "0"], "not a predictions batch"),
        (["prediction", "proof", "999999", "--position", "0"], "999999"),
        (
            ["prediction", "proof", "sha256:" + "e" * 64, "--input-sha256", "f" * 64],
            "no predictions of model",
        ),
        (["prediction", "proof", "missing.bin", "--input-sha256", "f" * 64], "no such file"),
        (["prediction", "check-proof", "missing.json"], "no such file"),
    ],
)
def test_cli_prediction_bad_input(
    ws: ailedger.Workspace, tmp_path: Path, args: list[str], needle: str
) -> None:
    assert needle in one_line_error(cli(ws.path, *args, cwd=tmp_path))
