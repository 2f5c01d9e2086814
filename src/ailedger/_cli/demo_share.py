"""The third part of ``ailedger demo``: two organisations share data under a contract.

A hospital offers an encrypted dataset on a chain both organisations use; a lab
requests it for a purpose and pays into escrow; the hospital grants; the lab fetches
through the hospital's node (signed request, grant checked on chain, key wrapped to
the lab's registered key), decrypts, verifies and trains on it. A third party with no
grant is refused; after the hospital revokes the grant, the lab's next fetch is refused.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from .. import Workspace
from .._node import serving
from .._node.app import create_app
from .._node.client import fetch
from .._provenance.datasets import add_dataset
from .._provenance.lineage import lineage
from .._provenance.tracking import track
from ..errors import Error
from .demo import DemoFailedError, _caught, _ok, _step, console
from .lineage import draw


def _serving_app(app: Any) -> AbstractContextManager[str]:
    return serving(app)


def _serving(home: Path) -> Any:
    return _serving_app(create_app(home))


def run_share_story(tmp: Path) -> None:
    _step("12. Two organisations, one chain: a hospital shares data with a lab")
    tmp = tmp / "sharing"
    tmp.mkdir()
    hospital = Workspace.init(tmp / "hospital", name="st-mary")
    chain = str(hospital.path / "chain.sqlite")
    dep = hospital.path / "deployment.json"
    lab = Workspace.init(tmp / "lab", name="sepsis-lab", chain=chain, contracts=dep)
    stranger = Workspace.init(tmp / "stranger", name="adtech", chain=chain, contracts=dep)
    console.print("  three identities registered on one chain (IdentityRegistry)")
    wards = tmp / "wards"
    wards.mkdir()
    rows = "\n".join(
        f"{60 + i % 30},{1.0 + (i * 7 % 40) / 10:.1f},{i % 3 == 0:d}" for i in range(300)
    )
    (wards / "admissions.csv").write_text("age,lactate,sepsis\n" + rows + "\n")
    rec = add_dataset(
        hospital,
        wards,
        name="icu-admissions",
        license="restricted",
        origin="St Mary ICU, pseudonymised",
        encrypt=True,
    )
    _ok(f"dataset icu-admissions encrypted at rest (AES-256-GCM), {rec.bytes:,} bytes")
    da_h, da_l = hospital.agreements(), lab.agreements()
    offer, _ = da_h.offer(
        bytes.fromhex(rec.manifest_digest),
        None,
        price=10**15,
        min_duration=600,
        max_duration=86400,
        response_window=3600,
    )
    _ok(f"offer {offer}: 0.001 ETH per request, grants of 10 minutes to one day")
    request, _ = da_l.request(offer, "sepsis early-warning research")
    _ok(f"lab requests it for 'sepsis early-warning research' (request {request}, escrowed)")
    ident = hospital.identity_registry().resolve(lab.address)
    if ident is None:
        raise DemoFailedError("the lab has no identity on chain")
    da_h.grant(request, int(time.time()) + 3600)
    _ok(f"hospital grants request {request} for one hour; the escrow streams to the hospital")

    with _serving(hospital.path) as url:
        console.print(f"  hospital node listening on {url} (tiles, receipts, data gateway)")
        got = fetch(lab, url, str(offer), tmp / "lab-data", purpose="sepsis early-warning research")
        _ok(
            f"lab fetched, decrypted and verified {got.files} file(s), {got.bytes:,} bytes,"
            f" root {got.root[:16]}…"
        )
        _ok(
            f"the access is on record in both logs (hospital #{got.provider_access_index},"
            f" lab #{got.access_index})"
        )
        with track("sepsis-model", params={"features": ["age", "lactate"]}, workspace=lab) as run:
            run.use(tmp / "lab-data")
            (tmp / "sepsis.model").write_bytes(b"weights trained on icu-admissions")
            run.log_model(tmp / "sepsis.model")
        g = lineage(lab, tmp / "sepsis.model")
        _ok("the lab's model links to the grant it was trained under (`ailedger lineage`):")
        console.print(draw(g))

        try:
            fetch(stranger, url, f"request:{request}", tmp / "stranger-data")  # the lab's grant
        except Error as e:
            _caught(f"a third party with no grant: {e}")
        else:
            raise DemoFailedError("a party with no grant fetched the data")
        da_h.revoke(request)
        _ok(f"hospital revokes grant {request}")
        try:
            fetch(lab, url, f"request:{request}", tmp / "lab-data-2")
        except Error as e:
            _caught(f"the lab, after revocation: {e}")
        else:
            raise DemoFailedError("a revoked grant still fetched the data")
    for ws in (hospital, lab, stranger):
        ws.close()
