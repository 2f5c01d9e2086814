"""Swarm contributions end to end: each member's registered datasets in every round.

Real members on loopback nodes and one embedded chain (the setup of test_runner.py, whose
fixtures and helpers are reused): every member records a signed contribution naming its
dataset, peers fetch and check it against the key registered on chain and the committed
digest, the final model's lineage/verify show every member's dataset, and a member proves
its contribution with ``swarm prove`` / ``swarm check-proof``.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ailedger import VerificationError, Workspace
from ailedger._provenance import types as t
from ailedger._provenance.datasets import add_dataset
from ailedger._statements import dsse, intoto
from ailedger._swarm import contribution as contrib
from ailedger._swarm.runner import SwarmMember

from .conftest import Data, create, run_members, running, statements

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
SHARDS = ("shard-a", "shard-b", "shard-c")


def with_datasets(names: list[str]) -> type[SwarmMember]:
    class Member(SwarmMember):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, datasets=names, **k)

    return Member


@pytest.fixture(scope="module")
def env(swarm_env: dict[str, Any], data: Data) -> dict[str, Any]:
    """The three members, each with its third of the data registered as a dataset."""
    for i, h in enumerate(swarm_env["homes"]):
        folder = swarm_env["root"] / f"data-{i}"
        folder.mkdir()
        part = data.parts[i]
        rows = np.column_stack([data.xtr[part], data.ytr[part]])
        np.savetxt(folder / "train.csv", rows, delimiter=",", fmt="%.6g")
        ws = Workspace.open(h)
        try:
            add_dataset(ws, folder, name=SHARDS[i])
        finally:
            ws.close()
    swarm_env["addrs"] = [Workspace.open(h).address for h in swarm_env["homes"]]
    return swarm_env


@pytest.fixture(scope="module")
def trained(env: dict[str, Any], data: Data) -> dict[str, Any]:
    """Two fedavg rounds where every member names its dataset; the final model on disk."""
    sid = create(env, data, "fedavg")
    res = run_members(
        env, sid, [data.trainer(i) for i in range(3)], 2,
        classes=[with_datasets([SHARDS[i]]) for i in range(3)],
    )
    final = res[0][-1].global_digest
    path = env["root"] / f"final-{sid}.params"
    ws = Workspace.open(env["homes"][0])
    try:
        path.write_bytes(ws.blobs.get(final))
    finally:
        ws.close()
    return {"sid": sid, "final": final, "path": path, "res": res}


def cli(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AILEDGER_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "ailedger", *args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=150,
    )


def one_error_line(out: subprocess.CompletedProcess[str], message: str) -> None:
    assert out.returncode != 0, out.stdout
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ailedger: error:"), out.stderr
    assert message in lines[0], lines[0]


# -- the datasets in the round statements, lineage and verify ----------------------


def test_every_round_names_every_members_dataset(env: dict[str, Any], trained: dict[str, Any]) -> None:
    sid = trained["sid"]
    want = dict(zip(env["addrs"], SHARDS, strict=True))
    for i, h in enumerate(env["homes"]):
        sts = statements(h, sid)
        assert [s["predicate"]["round"] for s in sts] == [0, 1]
        for s in sts:
            p = s["predicate"]
            assert p["outcome"]["status"] == "finalized"
            for m in p["members"]:
                assert m["used"] is True
                assert m["contribution"]["verified"] is True, m["contribution"]
                assert [d["name"] for d in m["datasets"]] == [want[m["address"]]]
                assert m["datasets"][0]["statement"]["origin"].startswith("ailedger.local/")
            own = next(m for m in p["members"] if m["address"] == env["addrs"][i])
            assert isinstance(own["contribution"]["index"], int)
    # The contribution is a statement in the member's own log, subject = its committed update.
    ws = Workspace.open(env["homes"][1])
    try:
        c = ws.swarm_rounds().commitment(sid, 1, ws.address)
        assert c is not None
        idx, env_digest = contrib.find(ws, sid, 1) or (None, None)
        assert idx is not None
        entry = ws.log.get(idx)
        assert ws.blobs.get(env_digest) == entry
        st = json.loads(dsse.b64decode_any(json.loads(entry)["payload"]))
        assert st["predicateType"] == t.SWARM_CONTRIBUTION
        assert st["subject"][0]["digest"] == {"sha256": c[0].hex()}
        assert st["predicate"]["datasets"][0]["name"] == "shard-b"
    finally:
        ws.close()


def test_node_serves_the_contribution(env: dict[str, Any], trained: dict[str, Any]) -> None:
    got = contrib.http_fetch(env["urls"][2], trained["sid"], 0)
    ws = Workspace.open(env["homes"][2])
    try:
        idx, _ = contrib.find(ws, trained["sid"], 0) or (0, "")
        assert got == ws.log.get(idx)
    finally:
        ws.close()
    assert contrib.http_fetch(env["urls"][2], trained["sid"], 99) is None
    assert contrib.http_fetch(env["urls"][2], 10**6, 0) is None


def test_lineage_and_verify_show_every_member_dataset(
    env: dict[str, Any], trained: dict[str, Any], tmp_path: Path
) -> None:
    from ailedger._provenance.bundle import dumps, export_bundle, load_bundle
    from ailedger._provenance.lineage import lineage
    from ailedger._provenance.verify import verify_artifact

    ws = Workspace.open(env["homes"][0])
    try:
        g = lineage(ws, trained["path"])
        rounds = [n for n in g if n.predicate_type == t.FEDERATED_ROUND]
        assert sorted(n.predicate["round"] for n in rounds) == [0, 1]
        for n in rounds:
            member_ds = {(d.ref.name or "") for d in n.dependencies
                         if d.ref.kind == t.KIND_MEMBER_DATASET}
            assert member_ds == {f"{s} of {a}" for s, a in zip(SHARDS, env["addrs"], strict=True)}
        # Own update ← own contribution ← own dataset registration.
        kinds = {n.kind for n in g}
        assert {"round", "contribution", "dataset"} <= kinds
        ws.anchor()
        rep = verify_artifact(ws, trained["path"])
        assert rep.ok, rep.summary()
        contribution_checks = [c for c in rep.checks if c.check == "contribution"]
        assert len(contribution_checks) == 6 and all(c.ok for c in contribution_checks)
        assert any("shard-c" in c.detail for c in contribution_checks)
        doc = export_bundle(ws, trained["path"])
        chain, contracts = str(ws.path / "chain.sqlite"), str(ws.path / "deployment.json")
    finally:
        ws.close()
    roles = {b["role"] for b in doc["blobs"].values()}
    assert "swarm-contribution" in roles
    b = load_bundle(dumps(doc))
    rep = verify_artifact(b, chain=chain, contracts=contracts)
    assert rep.ok, rep.summary()
    assert len([c for c in rep.checks if c.check == "contribution" and c.ok]) == 6
    off = verify_artifact(load_bundle(dumps(doc)), offline=True, trust_bundle_key=True)
    assert off.ok, off.summary()
    assert any("signature was not checked" in w for w in off.warnings)
    # A bundle whose contribution envelope was edited fails.
    bad = copy.deepcopy(doc)
    d, blob = next((d, x) for d, x in bad["blobs"].items() if x["role"] == "swarm-contribution")
    raw = base64.b64decode(blob["base64"])
    blob["base64"] = base64.b64encode(raw.replace(b"payload", b"payloaD", 1)).decode()
    rep = verify_artifact(load_bundle(dumps(bad)), chain=chain, contracts=contracts)
    assert not rep.ok
    assert any(c.check == "contribution" and not c.ok and d in c.detail for c in rep.checks)
    lin = cli(env["homes"][0], "lineage", str(trained["path"]))
    assert lin.returncode == 0, lin.stderr
    for s in SHARDS:
        assert s in lin.stdout
    assert f"swarm {trained['sid']} round 1 (finalized, fedavg, 3 members)" in lin.stdout


# -- bad contributions from a peer -------------------------------------------------


def _bad_node(env: dict[str, Any], mode: str) -> Any:
    """C's node as seen by its peers: updates served faithfully (proxied), but its
    contribution forged (signed by A), unsigned, about another subject, or missing."""
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    real = env["urls"][2]
    a, c = Workspace.open(env["homes"][0]), Workspace.open(env["homes"][2])
    signers = {"forged": a, "wrong-subject": c}

    async def blob(request: Request) -> Response:
        r = httpx.get(f"{real}/blob/sha256/{request.path_params['d']}", timeout=10)
        return Response(r.content, status_code=r.status_code)

    async def contribution(request: Request) -> Response:
        if mode == "missing":
            return Response(b"{}", status_code=404)
        s, r = request.path_params["s"], request.path_params["r"]
        got = httpx.get(f"{real}/swarm/{s}/round/{r}/contribution", timeout=10)
        env_doc = json.loads(got.content)
        if mode == "unsigned":
            env_doc["signatures"] = []
            return Response(dsse.to_bytes(env_doc))
        st = json.loads(dsse.b64decode_any(env_doc["payload"]))
        if mode == "wrong-subject":
            st["subject"][0]["digest"] = {"sha256": "ab" * 32}
        return Response(dsse.to_bytes(signers[mode].sign(st)))

    app = Starlette(routes=[
        Route("/blob/sha256/{d}", blob),
        Route("/swarm/{s}/round/{r}/contribution", contribution),
    ])
    return app, (a, c)


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("forged", "contribution signature"),
        ("unsigned", "contribution signature"),
        ("wrong-subject", "is not the committed update"),
        ("missing", "no contribution served"),
    ],
)
def test_bad_contribution_is_recorded_unverified(
    env: dict[str, Any], data: Data, mode: str, reason: str
) -> None:
    sid = create(env, data, "fedavg")
    app, handles = _bad_node(env, mode)
    try:
        with running(app) as bad_url:
            res = run_members(
                env, sid, [data.trainer(i) for i in range(3)], 1,
                urls=[*env["urls"][:2], bad_url],
                classes=[with_datasets([SHARDS[i]]) for i in range(3)],
            )
    finally:
        for h in handles:
            h.close()
    c_addr = env["addrs"][2]
    for i in (0, 1):
        assert res[i][0].status == "finalized"
        assert c_addr not in res[i][0].skipped  # the update itself is still used
        p = statements(env["homes"][i], sid)[0]["predicate"]
        entry = next(m for m in p["members"] if m["address"] == c_addr)
        assert entry["used"] is True
        assert entry["contribution"]["verified"] is False
        assert reason in entry["contribution"]["reason"], entry["contribution"]
        assert entry["datasets"] == []
        if mode != "missing":  # kept as evidence
            assert set(entry["contribution"]["envelope"]) == {"sha256"}
        others = [m for m in p["members"] if m["address"] != c_addr]
        assert all(m["contribution"]["verified"] for m in others)
    if mode == "forged":
        # verify of A's model: C's contribution is reported, the rest still verifies.
        from ailedger._provenance.verify import verify_artifact

        ws = Workspace.open(env["homes"][0])
        try:
            ws.anchor()
            rep = verify_artifact(ws, f"sha256:{res[0][0].global_digest}")
        finally:
            ws.close()
        assert rep.ok, rep.summary()
        assert any("was not verified when the round ran" in w for w in rep.warnings)


def test_check_rejects_contribution_for_another_round_or_member(
    env: dict[str, Any], trained: dict[str, Any]
) -> None:
    ws = Workspace.open(env["homes"][1])
    try:
        idx, _ = contrib.find(ws, trained["sid"], 0) or (0, "")
        entry = ws.log.get(idx)
        swarm = {"id": trained["sid"], "chainId": ws.deployment.chain_id,
                 "contract": ws.deployment.contracts["SwarmRounds"]}
        c = ws.swarm_rounds().commitment(trained["sid"], 0, ws.address)
        assert c is not None
        ds = contrib.check(entry, ws.ed25519_public, swarm=swarm, r=0, member=ws.address,
                           update=c[0].hex())
        assert [d["name"] for d in ds] == ["shard-b"]
        with pytest.raises(VerificationError, match=r"not swarm .* round 1"):
            contrib.check(entry, ws.ed25519_public, swarm=swarm, r=1, member=ws.address,
                          update=c[0].hex())
        with pytest.raises(VerificationError, match="member"):
            contrib.check(entry, ws.ed25519_public, swarm=swarm, r=0, member=env["addrs"][0],
                          update=c[0].hex())
        other = Workspace.open(env["homes"][0])
        try:
            with pytest.raises(VerificationError, match="signature"):
                contrib.check(entry, other.ed25519_public, swarm=swarm, r=0,
                              member=ws.address, update=c[0].hex())
        finally:
            other.close()
    finally:
        ws.close()


# -- proving a contribution --------------------------------------------------------


@pytest.fixture(scope="module")
def proof(env: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    out = env["root"] / "proof-b.json"
    p = cli(env["homes"][1], "swarm", "prove", str(trained["sid"]), "1", "-o", str(out))
    assert p.returncode == 0, p.stderr
    doc: dict[str, Any] = json.loads(out.read_text())
    return {"path": out, "doc": doc}


def _checker(home: Path) -> Callable[[Any], contrib.ProofResult]:
    def check(doc: Any) -> contrib.ProofResult:
        ws = Workspace.open(home)
        try:
            return contrib.check_proof(
                doc, swarm_rounds=ws.swarm_rounds(), identities=ws.identity_registry(),
                checkpoints=ws.registry(),
            )
        finally:
            ws.close()

    return check


def test_prove_then_check_proof(env: dict[str, Any], trained: dict[str, Any],
                                proof: dict[str, Any]) -> None:
    out = cli(env["homes"][0], "swarm", "check-proof", str(proof["path"]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"✔ {env['addrs'][1]} contributed update sha256:")
    assert "shard-b (root" in out.stdout
    assert f"round finalised to sha256:{trained['final']}" in out.stdout
    # With an explicit chain and the deployment to trust (no workspace needed).
    home = env["homes"][0]
    out = cli(home, "swarm", "check-proof", str(proof["path"]), "--chain",
              str(home / "chain.sqlite"), "--contracts", str(home / "deployment.json"))
    assert out.returncode == 0, out.stderr
    res = _checker(env["homes"][2])(proof["doc"])
    assert (res.round, res.member, res.global_digest) == (1, env["addrs"][1], trained["final"])
    assert [d["name"] for d in res.datasets] == ["shard-b"]


def _leaves(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _tampered(doc: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    bad = copy.deepcopy(doc)
    obj = bad
    for k in path[:-1]:
        obj = obj[k]
    v = obj[path[-1]]
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise AssertionError(f"unexpected leaf {path}: {v!r}")
    if isinstance(v, int):
        obj[path[-1]] = v + 1
    elif path[-1] == "entry":  # one byte of the signed entry
        raw = bytearray(base64.b64decode(v))
        raw[len(raw) // 2] ^= 0x01
        obj[path[-1]] = base64.b64encode(bytes(raw)).decode()
    elif path[-1] == "receipt":  # one byte of an inclusion-proof hash
        lines = v.split("\n")
        k = next(i for i, x in enumerate(lines) if x.startswith("index ")) + 1
        h = bytearray(base64.b64decode(lines[k]))
        h[0] ^= 0x01
        lines[k] = base64.b64encode(bytes(h)).decode()
        obj[path[-1]] = "\n".join(lines)
    else:
        i = len(v) - 2
        obj[path[-1]] = v[:i] + ("1" if v[i] != "1" else "2") + v[i + 1:]
    return bad


def test_any_tampered_field_fails(env: dict[str, Any], proof: dict[str, Any]) -> None:
    check = _checker(env["homes"][0])
    doc = proof["doc"]
    leaves = list(_leaves(doc))
    assert len(leaves) > 15
    for path in leaves:
        with pytest.raises(VerificationError, match=r"^contribution proof: "):
            check(_tampered(doc, path))
    # A checkpoint signature byte, and a dataset left out.
    bad = copy.deepcopy(doc)
    rc = bad["contribution"]["receipt"]
    bad["contribution"]["receipt"] = rc[:-30] + ("A" if rc[-30] != "A" else "B") + rc[-29:]
    with pytest.raises(VerificationError, match="contribution proof: contribution"):
        check(bad)
    bad = copy.deepcopy(doc)
    bad["datasets"] = []
    with pytest.raises(VerificationError, match="not those the contribution names"):
        check(bad)


def test_tampered_proof_fails_on_the_cli(env: dict[str, Any], proof: dict[str, Any],
                                         tmp_path: Path) -> None:
    bad = _tampered(proof["doc"], ("roundStatement", "entry"))
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(bad))
    one_error_line(cli(env["homes"][0], "swarm", "check-proof", str(f)),
                   "contribution proof: round statement")
    f.write_text(proof["path"].read_text()[:-200])
    one_error_line(cli(env["homes"][0], "swarm", "check-proof", str(f)),
                   "contribution proof: not JSON")


def test_proof_on_the_wrong_chain_fails(env: dict[str, Any], proof: dict[str, Any],
                                        tmp_path: Path) -> None:
    Workspace.init(tmp_path / "elsewhere", name="elsewhere").close()
    out = cli(tmp_path / "elsewhere", "swarm", "check-proof", str(proof["path"]))
    one_error_line(out, "contribution proof: it names SwarmRounds")


def test_proof_for_a_round_without_commitment_fails(
    env: dict[str, Any], trained: dict[str, Any]
) -> None:
    """B signs a contribution and a round statement for round 2 (started, nobody committed):
    everything it signed checks out, the chain refutes it."""
    sid = trained["sid"]
    ws = Workspace.open(env["homes"][1])
    try:
        assert ws.swarm_rounds().round_info(sid, 2) is not None
        swarm = {"id": sid, "chainId": ws.deployment.chain_id,
                 "contract": ws.deployment.contracts["SwarmRounds"]}
        fake = "cd" * 32
        rec = contrib.record(ws, swarm, 2, fake, 10, contrib.dataset_refs(ws, ["shard-b"]))
        last = statements(env["homes"][1], sid)[-1]["predicate"]
        pred = {**last, "round": 2, "localUpdate": {"digest": {"sha256": fake}, "numExamples": 10},
                "aggregate": {**last["aggregate"], "updates": [{"digest": fake, "numExamples": 10}]}}
        ri = ws.record(intoto.statement(
            [{"name": f"swarm:{sid}/round:2", "digest": {"sha256": trained["final"]}}],
            t.FEDERATED_ROUND, pred))
        doc = contrib.document(ws, swarm, 2, fake, rec.index, ri)
    finally:
        ws.close()
    with pytest.raises(VerificationError, match=r"committed no update in swarm .* round 2"):
        _checker(env["homes"][0])(doc)
    one_error_line(cli(env["homes"][1], "swarm", "prove", str(sid), "2"),
                   "committed no update in swarm")


def test_proof_refused_unless_the_member_backed_the_agreed_model(
    env: dict[str, Any], trained: dict[str, Any], proof: dict[str, Any]
) -> None:
    """A member's own aggregate always includes its update; only its on-chain submission
    of the agreed digest (and its statement saying so) shows the final model does."""
    doc = proof["doc"]
    env_ = json.loads(base64.b64decode(doc["roundStatement"]["entry"]))
    st = json.loads(base64.b64decode(env_["payload"]))
    swarm = doc["swarm"]
    g = contrib._round_checks(st, swarm, 1, env["addrs"][1], doc["update"]["sha256"])
    assert g == trained["final"]
    other = copy.deepcopy(st)
    other["predicate"]["computed"] = {"sha256": "ab" * 32}  # it aggregated something else
    with pytest.raises(VerificationError, match="own aggregate is not the finalised"):
        contrib._round_checks(other, swarm, 1, env["addrs"][1], doc["update"]["sha256"])
    other["predicate"]["aggregate"]["updates"] = 7  # malformed: refused, no TypeError
    with pytest.raises(VerificationError, match="not among the aggregate's inputs"):
        contrib._round_checks(other, swarm, 1, env["addrs"][1], doc["update"]["sha256"])

    class NoSubmission:
        """The chain as it would read with another submission by the member."""

        def __init__(self, real: Any, sub: bytes | None) -> None:
            self.real, self.sub = real, sub

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def submission(self, *a: Any) -> bytes | None:
            return self.sub

    ws = Workspace.open(env["homes"][0])
    try:
        kw = {"identities": ws.identity_registry(), "checkpoints": ws.registry()}
        minority = NoSubmission(ws.swarm_rounds(), bytes.fromhex("ab" * 32))
        with pytest.raises(VerificationError, match="not the agreed global digest"):
            contrib.check_proof(doc, swarm_rounds=minority, **kw)  # type: ignore[arg-type]
        late = NoSubmission(ws.swarm_rounds(), None)
        res = contrib.check_proof(doc, swarm_rounds=late, **kw)  # type: ignore[arg-type]
        assert res.backed_on_chain is False and res.global_digest == g
        agreed = NoSubmission(ws.swarm_rounds(), bytes.fromhex(g))
        res = contrib.check_proof(doc, swarm_rounds=agreed, **kw)  # type: ignore[arg-type]
        assert res.backed_on_chain is True
    finally:
        ws.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["swarm", "prove", "999", "0"], "no swarm 999"),
        (["swarm", "prove", "{sid}", "99"], "has no round 99"),
        (["swarm", "check-proof", "/nonexistent/proof.json"], "no such file"),
        (["swarm", "check-proof", "{proof}", "--chain", "/nonexistent"], "--chain and --contracts"),
        (["swarm", "run", "{sid}", "--train", "mytrain:train", "--dataset", "nosuch"],
         "no dataset named 'nosuch'"),
    ],
)
def test_cli_bad_input(env: dict[str, Any], trained: dict[str, Any], proof: dict[str, Any],
                       tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "mytrain.py").write_text("def train(p, r):\n    return p, 1\n")
    args = [a.format(sid=trained["sid"], proof=proof["path"]) for a in args]
    one_error_line(cli(env["homes"][0], *args, cwd=tmp_path), message)
