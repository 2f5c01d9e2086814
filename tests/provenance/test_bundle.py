"""Export bundles (bundle, intoto, prov-json), verifying them with no workspace, and bad input."""

from __future__ import annotations

import base64
import copy as copymod
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ailedger
from ailedger._provenance import bundle as bundle_mod
from ailedger._provenance import types as t
from ailedger._provenance.bundle import (
    FORMAT,
    dumps,
    export_bundle,
    export_intoto,
    export_prov,
    load_bundle,
)
from ailedger._provenance.verify import verify_artifact
from ailedger._statements import dsse

from ..conftest import PYTHON
from . import test_lineage as tl
from .test_lineage import Built, build, sha

# the fixtures of test_lineage, shared (module-scoped: built once for this module too)
built = tl.built
copy = tl.copy


@pytest.fixture(scope="module")
def bundle(built: Built) -> dict[str, Any]:
    with ailedger.Workspace.open(built.ws_path) as ws:
        return export_bundle(ws, built.model)


@pytest.fixture(scope="module")
def vk(built: Built) -> str:
    with ailedger.Workspace.open(built.ws_path) as ws:
        return ws.verifier_key


def _failed(rep: Any) -> list[tuple[int | None, str]]:
    return [(c.index, c.check) for c in rep.failures]


# -- the bundle format -------------------------------------------------------------


def test_bundle_fields(bundle: dict[str, Any], built: Built, vk: str) -> None:
    b = bundle
    assert b["format"] == FORMAT
    assert b["artifact"] == {"name": "model.bin", "digest": {"sha256": built.model_digest}}
    assert b["log"]["verifier_key"] == vk and vk.startswith(b["log"]["origin"] + "+")
    assert b["chain"]["chain_id"] == 1337 and b["chain"]["CheckpointRegistry"].startswith("0x")
    assert [s["index"] for s in b["statements"]] == sorted(
        built.idx[k] for k in ("dataset", "base", "run", "eval", "pred")
    )
    for s in b["statements"]:
        assert s["receipt"].startswith("c2sp.org/tlog-proof@v1\n")
        assert f"\nindex {s['index']}\n" in s["receipt"]
    roles = {d: v["role"] for d, v in b["blobs"].items()}
    assert roles == {
        built.manifest_digest: "dataset-manifest",
        built.leaves_digest: "prediction-leaves",
    }
    assert b["omitted_blobs"] == []
    (kid,) = b["signers"]
    assert b["signers"][kid]["name"] == "alice"
    # serialised bytes load back to the same document
    assert load_bundle(dumps(b)).doc == json.loads(dumps(b))


def test_blob_budget_omits_and_says_so(
    built: Built, vk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle_mod, "MAX_BLOB", 10)  # instead of making 16 MiB blobs
    with ailedger.Workspace.open(built.ws_path) as ws:
        b = export_bundle(ws, built.model)
    assert b["blobs"] == {}
    assert {o["role"] for o in b["omitted_blobs"]} == {"dataset-manifest", "prediction-leaves"}
    rep = verify_artifact(b, built.model, offline=True, verifier_key=vk)
    assert rep.ok, rep.summary()
    assert sum("left out of the bundle" in w for w in rep.warnings) == 2


def test_omitting_a_small_blob_fails(bundle: dict[str, Any], built: Built, vk: str) -> None:
    """`omitted_blobs` is the bundle's word: a blob the signed predicate says is small
    may not be left out (deleting the manifest to hide an edit fails the data check)."""
    b = copymod.deepcopy(bundle)
    del b["blobs"][built.manifest_digest]
    b["omitted_blobs"] = [
        {
            "digest": {"sha256": built.manifest_digest},
            "role": "dataset-manifest",
            "size": 99_999_999,
            "reason": "too large",
        }
    ]
    rep = verify_artifact(b, offline=True, verifier_key=vk)
    assert _failed(rep) == [(built.idx["dataset"], "data")]
    assert "not over the" in rep.failures[0].detail
    assert "left out of the bundle" in rep.failures[0].detail


def test_omitted_external_predicate_fails(copy: Built, vk: str) -> None:
    """An external predicate left out would drop the statement's dependencies: never accepted."""
    from ailedger._provenance.lineage import EXTERNAL_PREDICATE

    with ailedger.Workspace.open(copy.ws_path) as ws:
        body = tl.canon(
            {
                "model": {"name": "model.bin", "digest": t.digest(copy.model_digest)},
                "dataset": {"name": "dataset:iris", "digest": t.digest(copy.manifest_digest)},
                "metrics": {"accuracy": 0.5},
                "evaluatedAt": tl.T1,
            }
        )
        d = ws.blobs.put(body)
        i = ws.record(
            ailedger.statement(
                [{"name": "model.bin", "digest": t.digest(copy.model_digest)}],
                EXTERNAL_PREDICATE,
                {"externalPredicate": {"predicateType": t.EVALUATION, "digest": t.digest(d)}},
            )
        )
        b = export_bundle(ws, copy.model)
        key = ws.verifier_key
    assert b["blobs"][d]["role"] == "external-predicate"
    assert verify_artifact(b, offline=True, verifier_key=key).ok
    del b["blobs"][d]
    b["omitted_blobs"] = [
        {
            "digest": {"sha256": d},
            "role": "external-predicate",
            "size": 1 << 30,
            "reason": "too large",
        }
    ]
    rep = verify_artifact(b, offline=True, verifier_key=key)
    assert _failed(rep) == [(i, "data")]
    assert "external predicate" in rep.failures[0].detail


def test_records_mode_dataset_in_a_bundle_is_not_checked(tmp_path: Path) -> None:
    """A records-mode root needs the records: from a bundle it is a warning, never a pass."""
    datasets = pytest.importorskip("ailedger._provenance.datasets")
    data = tmp_path / "recs"
    data.mkdir()
    (data / "rows.csv").write_text("a,b\n1,2\n3,4\n")
    with ailedger.Workspace.init(tmp_path / "ws", name="bob") as ws:
        rec = datasets.add_dataset(ws, data, name="recs", records=True)
        b = export_bundle(ws, "recs")
        key = ws.verifier_key
    rep = verify_artifact(b, offline=True, verifier_key=key)
    assert rep.ok, rep.summary()
    assert not any(c.check == "data" and c.index == rec.index for c in rep.checks)
    assert any("records-mode fingerprint root" in w and "not checked" in w for w in rep.warnings)


# -- verifying a bundle ------------------------------------------------------------


def test_bundle_verifies_offline_with_key(bundle: dict[str, Any], built: Built, vk: str) -> None:
    rep = verify_artifact(bundle, built.model, offline=True, verifier_key=vk)
    assert rep.ok, rep.summary()
    assert not any("out of band" in w for w in rep.warnings)
    checks = {(c.index, c.check) for c in rep.checks}
    for i in built.idx.values():
        assert {(i, "signature"), (i, "checkpoint"), (i, "inclusion")} <= checks
    # artifact defaults to the bundle's own
    assert verify_artifact(bundle, offline=True, verifier_key=vk).ok


def test_bundle_key_alone_fails_closed(bundle: dict[str, Any]) -> None:
    rep = verify_artifact(bundle, offline=True)
    assert _failed(rep) == [(None, "log key")]
    assert "check it out of band" in rep.failures[0].detail
    rep = verify_artifact(bundle, offline=True, trust_bundle_key=True)
    assert rep.ok and any("key taken from the bundle" in w for w in rep.warnings)


def test_bundle_verifies_online(bundle: dict[str, Any], built: Built) -> None:
    rep = verify_artifact(
        bundle,
        built.model,
        chain=str(built.ws_path / "chain.sqlite"),
        contracts=built.ws_path / "deployment.json",
    )
    assert rep.ok, rep.summary()
    assert any(c.check == "log key" and "bound on chain" in c.detail for c in rep.checks)
    assert sum(c.check == "anchor" for c in rep.checks) == 5
    # online without a chain is a failed check, not a silent pass
    rep = verify_artifact(bundle, built.model, trust_bundle_key=True)
    assert (None, "anchor") in _failed(rep)


def test_bundle_model_changed_by_one_byte(
    bundle: dict[str, Any], tmp_path: Path, built: Built, vk: str
) -> None:
    f = tmp_path / "model.bin"
    b = bytearray(built.model.read_bytes())
    b[0] ^= 0x80
    f.write_bytes(bytes(b))
    rep = verify_artifact(bundle, f, offline=True, verifier_key=vk)
    assert _failed(rep) == [(None, "artifact")]
    assert "the file was changed" in rep.failures[0].detail


def _edit_b64(s: str, pos: int) -> str:
    c = s[pos]
    return s[:pos] + ("B" if c != "B" else "C") + s[pos + 1 :]


def test_bundle_edited_envelope(bundle: dict[str, Any], built: Built, vk: str) -> None:
    b = copymod.deepcopy(bundle)
    s = next(s for s in b["statements"] if s["index"] == built.idx["run"])
    s["envelope"]["payload"] = _edit_b64(s["envelope"]["payload"], 40)
    rep = verify_artifact(b, offline=True, verifier_key=vk)
    assert not rep.ok
    assert (built.idx["run"], "signature") in _failed(rep)
    assert (built.idx["run"], "inclusion") in _failed(rep)


def test_bundle_edited_receipt_hash(bundle: dict[str, Any], built: Built, vk: str) -> None:
    b = copymod.deepcopy(bundle)
    s = next(s for s in b["statements"] if s["index"] == built.idx["eval"])
    lines = s["receipt"].split("\n")
    k = next(i for i, line in enumerate(lines) if line.startswith("index ")) + 1
    lines[k] = _edit_b64(lines[k], 3)
    s["receipt"] = "\n".join(lines)
    rep = verify_artifact(b, offline=True, verifier_key=vk)
    assert _failed(rep) == [(built.idx["eval"], "inclusion")]
    assert rep.failures[0].predicate_type == t.EVALUATION


def test_bundle_edited_verifier_key(bundle: dict[str, Any], vk: str) -> None:
    b = copymod.deepcopy(bundle)
    b["log"]["verifier_key"] = _edit_b64(vk, len(vk) - 5)
    rep = verify_artifact(b, offline=True, trust_bundle_key=True)
    assert _failed(rep) == [(None, "log key")]
    assert "edited" in rep.failures[0].detail


def test_bundle_edited_blob(bundle: dict[str, Any], built: Built, vk: str) -> None:
    b = copymod.deepcopy(bundle)
    raw = bytearray(base64.b64decode(b["blobs"][built.manifest_digest]["base64"]))
    raw[-3] ^= 1
    b["blobs"][built.manifest_digest]["base64"] = base64.b64encode(bytes(raw)).decode()
    rep = verify_artifact(b, offline=True, verifier_key=vk)
    assert _failed(rep) == [(built.idx["dataset"], "data")]


def test_bundle_from_another_log_fails_with_the_real_key(
    tmp_path: Path,
    vk: str,
) -> None:
    """An attacker re-signs the same history in their own log: the bundle is self-consistent."""
    other = build(tmp_path, name="mallory")
    with ailedger.Workspace.open(other.ws_path) as ws:
        b = export_bundle(ws, other.model)
    assert verify_artifact(b, offline=True, trust_bundle_key=True).ok
    rep = verify_artifact(b, offline=True, verifier_key=vk)
    assert _failed(rep) == [(None, "log key")]


def test_unanchored_bundle_fails_online(copy: Built) -> None:
    with ailedger.Workspace.open(copy.ws_path) as ws:
        ws.record(
            ailedger.statement(
                [{"name": "x", "digest": t.digest(copy.model_digest)}],
                "https://example.com/note/v1",
            )
        )
        b = export_bundle(ws, copy.model)
    rep = verify_artifact(
        b, chain=str(copy.ws_path / "chain.sqlite"), contracts=copy.ws_path / "deployment.json"
    )
    assert not rep.ok
    assert {c for _, c in _failed(rep)} == {"anchor"}
    assert "not anchored yet" in rep.failures[0].detail


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[]", b'{"format": "x"}', b"\xff\xfe", b"null"],
)
def test_malformed_bundles_are_one_error(data: bytes) -> None:
    with pytest.raises(ailedger.VerificationError, match="bundle"):
        load_bundle(data)


def test_truncated_bundle(bundle: dict[str, Any]) -> None:
    raw = dumps(bundle)
    for cut in (1, len(raw) // 2, len(raw) - 3):
        with pytest.raises(ailedger.VerificationError, match="truncated or edited"):
            load_bundle(raw[:cut])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_envelope_edit_fails(bundle: dict[str, Any], vk: str, data: st.DataObject) -> None:
    b = copymod.deepcopy(bundle)
    s = data.draw(st.sampled_from(b["statements"]))
    field = data.draw(st.sampled_from(["payload", "sig", "payloadType"]))
    env = s["envelope"]
    target = env["signatures"][0] if field == "sig" else env
    text = target[field]
    pos = data.draw(st.integers(0, len(text) - 1))
    ch = data.draw(st.sampled_from("ABab09+/=x"))
    if text[pos] == ch:
        return
    target[field] = text[:pos] + ch + text[pos + 1 :]
    rep = verify_artifact(b, offline=True, verifier_key=vk)
    assert not rep.ok
    assert any(c.index == s["index"] for c in rep.failures) or any(
        c.check == "lineage" for c in rep.failures
    )


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(pos=st.integers(min_value=0), byte=st.integers(0, 255))
def test_any_byte_edit_is_an_ailedger_error_or_a_report(
    bundle: dict[str, Any], vk: str, pos: int, byte: int
) -> None:
    raw = bytearray(dumps(bundle))
    raw[pos % len(raw)] = byte
    try:
        rep = verify_artifact(load_bundle(bytes(raw)), offline=True, verifier_key=vk)
    except ailedger.Error:
        return
    assert isinstance(rep.ok, bool)


# -- other formats -------------------------------------------------------------------


def test_intoto_lines_are_envelopes(built: Built) -> None:
    with ailedger.Workspace.open(built.ws_path) as ws:
        data = export_intoto(ws, built.model)
        keys = ws.trusted_keys()
        assert data.endswith(b"\n")
        lines = data.split(b"\n")[:-1]
        assert len(lines) == 5
        for i, line in zip(sorted(built.idx.values()), lines, strict=True):
            assert line == ws.log.get(i)
            env = dsse.parse(line)
            payload, _ = dsse.verify(env, keys)
            assert json.loads(payload)["_type"] == "https://in-toto.io/Statement/v1"


def test_prov_json_structure(built: Built) -> None:
    with ailedger.Workspace.open(built.ws_path) as ws:
        doc = export_prov(ws, built.model)
        origin = ws.origin
        keyid = ws.keyid
    assert set(doc) >= {"prefix", "entity", "activity", "agent", "wasGeneratedBy", "used"}
    assert set(doc) >= {"wasAssociatedWith", "wasDerivedFrom"}
    model = f"sha256:{built.model_digest}"
    dataset = f"sha256:{built.manifest_digest}"
    run = f"log:{origin}/{built.idx['run']}"
    assert doc["entity"][model]["prov:type"] == "ailedger:model"
    assert doc["entity"][dataset]["prov:type"] == "ailedger:dataset"
    assert doc["entity"][f"sha256:{built.leaves_digest}"]["prov:type"] == "ailedger:predictions"
    assert doc["activity"][run]["prov:startTime"] == "2026-01-01T00:00:00Z"
    assert doc["activity"][run]["prov:endTime"] == "2026-01-01T00:10:00Z"
    assert doc["agent"][f"key:{keyid}"]["prov:label"] == "alice"

    def has(rel: str, **kv: str) -> bool:
        return any(all(r.get(k) == v for k, v in kv.items()) for r in doc[rel].values())

    assert has("wasGeneratedBy", **{"prov:entity": model, "prov:activity": run})
    assert has("used", **{"prov:activity": run, "prov:entity": dataset})
    assert has("wasDerivedFrom", **{"prov:generatedEntity": model, "prov:usedEntity": dataset})
    assert has("wasAssociatedWith", **{"prov:activity": run, "prov:agent": f"key:{keyid}"})
    ev = f"log:{origin}/{built.idx['eval']}"
    assert has("used", **{"prov:activity": ev, "prov:entity": model})
    # every relation points at declared nodes
    ids = set(doc["entity"]) | set(doc["activity"]) | set(doc["agent"])
    for rel in ("wasGeneratedBy", "used", "wasAssociatedWith", "wasDerivedFrom"):
        for r in doc[rel].values():
            assert all(v in ids for k, v in r.items() if k.startswith("prov:"))


# -- the CLI, as a user runs it -------------------------------------------------------


def cli(
    cwd: Path, *args: str, home: Path | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AILEDGER_PASSPHRASE", "AILEDGER_HOME")}
    if home is not None:
        env["AILEDGER_HOME"] = str(home)
    p = subprocess.run(
        [PYTHON, "-m", "ailedger", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ok:
        assert p.returncode == 0, p.stderr + p.stdout
    else:
        assert p.returncode != 0, p.stdout
        assert "Traceback" not in p.stderr and p.stderr.count("\n") == 1, p.stderr
        assert p.stderr.startswith("ailedger: error: ")
    return p


def test_cli_export_then_verify_in_a_fresh_folder(copy: Built, tmp_path: Path) -> None:
    out = cli(copy.root, "lineage", "model.bin", home=copy.ws_path).stdout
    for s in ("made by", "run train-r1", "dataset iris", "evaluations", "predictions", "alice"):
        assert s in out
    assert "anchored at size" in out
    cli(copy.root, "export", "model.bin", "-o", "b.json", "--anchor", home=copy.ws_path)
    cli(
        copy.root, "export", "model.bin", "-o", "p.json", "--format", "prov-json", home=copy.ws_path
    )
    assert "activity" in json.loads((copy.root / "p.json").read_text())
    lines = cli(
        copy.root, "export", "model.bin", "-o", "-", "--format", "intoto", home=copy.ws_path
    ).stdout.splitlines()
    assert all(json.loads(line)["payloadType"] == dsse.INTOTO_PAYLOAD_TYPE for line in lines)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "model.bin").write_bytes(copy.model.read_bytes())
    (fresh / "b.json").write_bytes((copy.root / "b.json").read_bytes())
    # nothing binds the bundle's key: one clear line, before any check (a forged bundle,
    # made in an attacker's own workspace, is just as self-consistent)
    p = cli(fresh, "verify", "model.bin", "--bundle", "b.json", "--offline", ok=False)
    assert p.stdout == ""
    assert "--verifier-key (obtained out of band" in p.stderr
    assert "--trust-bundle-key" in p.stderr
    p = cli(fresh, "verify", "model.bin", "--bundle", "b.json", "--offline", "--trust-bundle-key")
    assert "✔ [" in p.stdout and "✘" not in p.stdout
    assert "key taken from the bundle: check it out of band" in p.stdout
    assert p.stdout.rstrip().endswith("passed")
    assert sorted(x.name for x in fresh.iterdir()) == ["b.json", "model.bin"]  # no workspace made
    vk = json.loads((fresh / "b.json").read_text())["log"]["verifier_key"]
    p = cli(fresh, "verify", "model.bin", "--bundle", "b.json", "--offline", "--verifier-key", vk)
    assert "out of band" not in p.stdout
    p = cli(
        fresh,
        "verify",
        "model.bin",
        "--bundle",
        "b.json",
        "--chain",
        str(copy.ws_path / "chain.sqlite"),
        "--contracts",
        str(copy.ws_path / "deployment.json"),
    )
    assert "✔ [3] anchor training run" in p.stdout and "bound on chain" in p.stdout
    # one byte changed in the model: exit 1, the checklist names it, one error line
    m = bytearray((fresh / "model.bin").read_bytes())
    m[-1] ^= 1
    (fresh / "model.bin").write_bytes(bytes(m))
    p = cli(
        fresh,
        "verify",
        "model.bin",
        "--bundle",
        "b.json",
        "--offline",
        "--verifier-key",
        vk,
        ok=False,
    )
    assert "✘ artifact" in p.stdout and "NOT verified" in p.stderr
    # a truncated bundle: one clear line
    raw = (fresh / "b.json").read_bytes()
    (fresh / "t.json").write_bytes(raw[: len(raw) // 3])
    p = cli(fresh, "verify", "--bundle", "t.json", "--offline", ok=False)
    assert "truncated or edited" in p.stderr
    p = cli(fresh, "verify", "--bundle", "missing.json", "--offline", ok=False)
    assert "no such bundle file" in p.stderr


def test_cli_workspace_verify_and_bad_input(copy: Built, tmp_path: Path) -> None:
    p = cli(copy.root, "verify", "model.bin", home=copy.ws_path)
    assert "✔ [0] anchor dataset" in p.stdout
    (tmp_path / "x.bin").write_bytes(b"never seen")
    p = cli(tmp_path, "lineage", "x.bin", home=copy.ws_path, ok=False)
    assert "no history for x.bin" in p.stderr
    p = cli(tmp_path, "verify", "x.bin", "--offline", home=copy.ws_path, ok=False)
    assert "✘ artifact" in p.stdout
    cli(tmp_path, "lineage", "nope", home=copy.ws_path, ok=False)
    p = cli(
        copy.root, "export", "model.bin", "-o", "x", "--format", "xml", home=copy.ws_path, ok=False
    )
    assert "--format must be one of" in p.stderr
    p = cli(tmp_path, "verify", "model.bin", home=tmp_path / "nows", ok=False)
    assert "no ailedger workspace" in p.stderr


def test_bundle_signer_name_is_only_a_claim(bundle: dict[str, Any], built: Built, vk: str) -> None:
    """A bundle's signer names are unsigned: shown only labelled as the bundle's claim."""
    b = copymod.deepcopy(bundle)
    (kid,) = b["signers"]
    fake = "EU Notified Body (IdentityRegistry)"
    b["signers"][kid]["name"] = fake
    rep = verify_artifact(b, offline=True, verifier_key=vk)
    assert rep.ok, rep.summary()
    origin = vk.split("+")[0]
    sigs = [c.detail for c in rep.checks if c.check == "signature"]
    assert sigs and all(
        d == f'DSSE signed by {origin} (log key), "{fake}" (claimed by the bundle)' for d in sigs
    )
    assert rep.graph is not None
    assert {n.signer for n in rep.graph} == {
        f'{origin} (log key), "{fake}" (claimed by the bundle)'
    }
    # no name in the bundle: the verified log key's name alone
    del b["signers"][kid]["name"]
    rep = verify_artifact(b, offline=True, verifier_key=vk)
    assert {c.detail for c in rep.checks if c.check == "signature"} == {f"DSSE signed by {origin}"}


def test_dropped_dataset_statement_fails(bundle: dict[str, Any], built: Built, vk: str) -> None:
    """Removing a statement from the bundle cannot go unnoticed: every input without a
    producer is reported; a dataset without its registration fails."""
    rep = verify_artifact(bundle, offline=True, verifier_key=vk)
    assert rep.ok
    code = sha(b"code")
    assert [(r.kind, r.name, r.digest) for r in rep.unrecorded] == [
        (t.KIND_CODE, "git+https://example.com/repo@abc", code)
    ]
    assert any(
        f"code git+https://example.com/repo@abc sha256:{code}: no recorded history" in w
        for w in rep.warnings
    )
    b = copymod.deepcopy(bundle)
    b["statements"] = [s for s in b["statements"] if s["index"] != built.idx["dataset"]]
    rep = verify_artifact(b, offline=True, verifier_key=vk)
    assert _failed(rep) == [(built.idx["run"], "lineage")]
    assert rep.failures[0].detail == (
        f"dataset dataset:iris sha256:{built.manifest_digest} has no registration in the bundle"
    )
    assert {(r.kind, r.digest) for r in rep.unrecorded} == {
        (t.KIND_CODE, code),
        (t.KIND_DATASET, built.manifest_digest),
    }
    # a dropped model statement: reported as a warning with the name, kind and digest
    b = copymod.deepcopy(bundle)
    b["statements"] = [s for s in b["statements"] if s["index"] != built.idx["base"]]
    rep = verify_artifact(b, offline=True, verifier_key=vk)
    assert rep.ok, rep.summary()
    assert any(
        f"model base.bin sha256:{built.base_digest}: no recorded history" in w for w in rep.warnings
    )


def _paths(obj: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field of a JSON document (the first two items of each list)."""
    out = [at] if at else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*at, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:2]):
            out += _paths(v, (*at, i))
    return out


_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_field_of_another_type_is_an_ailedger_error_or_a_report(
    bundle: dict[str, Any], vk: str, data: st.DataObject
) -> None:
    """Replace any field (top-level or nested) by a JSON value of another type: loading and
    verifying either reports or raises one ailedger.Error, never anything else."""
    b = copymod.deepcopy(bundle)
    path = data.draw(st.sampled_from(_paths(b)))
    new = data.draw(_JSON_VALUES)
    parent = b
    for k in path[:-1]:
        parent = parent[k]
    if type(parent[path[-1]]) is type(new):
        return
    parent[path[-1]] = new
    try:
        loaded = load_bundle(dumps(b))
        for kw in ({"verifier_key": vk}, {"trust_bundle_key": True}):
            rep = verify_artifact(loaded, offline=True, **kw)  # type: ignore[arg-type]
            assert isinstance(rep.ok, bool)
    except ailedger.Error as e:
        assert "\n" not in str(e)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("omitted_blobs", 5, "omitted_blobs must be a list, not an integer"),
        ("blobs", [], "blobs must be an object, not a list"),
        ("signers", "x", "signers must be an object, not text"),
        ("created", 1.5, "created must be text, not a number"),
        ("chain", True, "chain must be an object, not a boolean"),
        ("log", {"origin": "o", "verifier_key": 7}, "log.verifier_key must be text"),
    ],
)
def test_field_of_the_wrong_type_is_named(
    bundle: dict[str, Any], field: str, value: Any, message: str
) -> None:
    b = copymod.deepcopy(bundle)
    b[field] = value
    with pytest.raises(ailedger.VerificationError, match=f"bundle is not valid: {message}"):
        load_bundle(dumps(b))
