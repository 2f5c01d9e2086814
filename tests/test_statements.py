"""DSSE, in-toto statements, signed notes and receipts."""

from __future__ import annotations

import base64
import json

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from ailedger import InputError, Receipt, VerificationError, Verifier, pae, statement
from ailedger._crypto.keys import keyid_of
from ailedger._log.note import (
    Checkpoint,
    key_id,
    open_checkpoint,
    open_note,
    sign_note,
    verifier_key,
)
from ailedger._statements import dsse, intoto

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key().public_bytes_raw()
KID = keyid_of(PUB)
ST = statement(
    [{"name": "m.bin", "digest": {"sha256": "ab" * 32}}], "https://example.com/p/v1", {"x": 1.5}
)


def test_pae_matches_dsse_spec_example() -> None:
    # DSSE protocol.md, "Test vectors".
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("", b"") == b"DSSEv1 0  0 "
    assert pae("t/é", b"\x00\xff") == b"DSSEv1 4 t/\xc3\xa9 2 \x00\xff"


def test_pae_matches_securesystemslib() -> None:
    from securesystemslib.dsse import Envelope

    env = Envelope(b"hello world", "http://example.com/HelloWorld", {})
    assert env.pae() == pae("http://example.com/HelloWorld", b"hello world")


def test_sign_verify_and_interop_with_securesystemslib() -> None:
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    payload = intoto.canonical(ST)
    env = dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, KEY, KID)
    got, good = dsse.verify(env, {KID: PUB})
    assert got == payload and good == [KID]
    # An independent implementation accepts our envelope.
    key = SSlibKey(KID, "ed25519", "ed25519", {"public": PUB.hex()})
    sslib_env = Envelope.from_dict(env)
    assert KID in sslib_env.verify([key], 1)


def test_canonical_fast_path_is_rfc8785() -> None:
    env = dsse.sign(intoto.canonical(ST), dsse.INTOTO_PAYLOAD_TYPE, KEY, KID)
    assert dsse.to_bytes(env) == rfc8785.dumps(env)
    odd = dict(env, payloadType='we"ird/\u00e9')
    assert dsse.to_bytes(odd) == rfc8785.dumps(odd)


def test_verify_accepts_urlsafe_base64_and_fails_closed() -> None:
    env = dsse.sign(b"\xfb\xff\xfe" * 10, "t", KEY, KID)
    url = {
        "payload": base64.urlsafe_b64encode(base64.b64decode(env["payload"])).decode().rstrip("="),
        "payloadType": "t",
        "signatures": [
            {
                "keyid": KID,
                "sig": base64.urlsafe_b64encode(
                    base64.b64decode(env["signatures"][0]["sig"])
                ).decode(),
            }
        ],
    }
    assert dsse.verify(url, {KID: PUB})[0] == b"\xfb\xff\xfe" * 10
    with pytest.raises(VerificationError):
        dsse.verify(env, {})  # an empty policy never passes
    other = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(VerificationError):
        dsse.verify(env, {keyid_of(other): other})
    tampered = dict(env, payloadType="u")
    with pytest.raises(VerificationError):
        dsse.verify(tampered, {KID: PUB})
    with pytest.raises(VerificationError):
        dsse.verify(dict(env, signatures=[]), {KID: PUB})


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b"{",
        b'{"payload":1}',
        b'{"payload":"","payloadType":"t","signatures":[]}',
        b'{"payload":"","payloadType":"t","signatures":[{"keyid":"a"}]}',
        b'{"payloadType":"t","payload":"","signatures":[{"sig":"AA=="}]}',  # not canonical
        b'{"payload": "", "payloadType":"t","signatures":[{"sig":"AA=="}]}',
        b'{"payload":"","payload":"","payloadType":"t","signatures":[{"sig":"AA=="}]}',
        b"\xff\xfe",
    ],
)
def test_parse_rejects_malformed_envelopes(data: bytes) -> None:
    with pytest.raises(InputError):
        dsse.parse(data)


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"digest": {"sha256": "a" * 64}}],
            "predicateType": "https://x/y",
        },
        {"_type": intoto.STATEMENT_TYPE, "subject": [], "predicateType": "https://x/y"},
        {
            "_type": intoto.STATEMENT_TYPE,
            "subject": [{"digest": {"sha256": "A" * 64}}],
            "predicateType": "https://x/y",
        },
        {
            "_type": intoto.STATEMENT_TYPE,
            "subject": [{"digest": {"sha256": "a" * 63}}],
            "predicateType": "https://x/y",
        },
        {
            "_type": intoto.STATEMENT_TYPE,
            "subject": [{"digest": {}}],
            "predicateType": "https://x/y",
        },
        {
            "_type": intoto.STATEMENT_TYPE,
            "subject": [{"digest": {"sha256": "a" * 64}}],
            "predicateType": "nope",
        },
        {
            "_type": intoto.STATEMENT_TYPE,
            "subject": [{"digest": {"sha256": "a" * 64}}],
            "predicateType": "https://x/y",
            "predicate": [],
        },
        {
            "_type": intoto.STATEMENT_TYPE,
            "subject": [{"digest": {"sha256": "a" * 64}}],
            "predicateType": "https://x/y",
            "extra": 1,
        },
    ],
)
def test_statement_validation(bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(InputError):
        intoto.validate(bad)


# -- signed notes -----------------------------------------------------------------


def test_verifier_key_format() -> None:
    vk = verifier_key("example.com/log", PUB)
    name, kid, b64 = vk.split("+", 2)
    assert name == "example.com/log" and kid == key_id("example.com/log", PUB).hex()
    assert base64.b64decode(b64) == b"\x01" + PUB
    v = Verifier.parse(vk)
    assert (v.name, v.public, str(v)) == ("example.com/log", PUB, vk)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a+b",
        "name+zzzzzzzz+AQ==",
        "na me+00000000+" + base64.b64encode(b"\x01" + PUB).decode(),
        "n+00000000+" + base64.b64encode(b"\x01" + PUB).decode(),
        "n+" + key_id("n", PUB).hex() + "+" + base64.b64encode(b"\x02" + PUB).decode(),
    ],
)
def test_verifier_key_rejects_garbage(bad: str) -> None:
    with pytest.raises(InputError):
        Verifier.parse(bad)


def test_note_roundtrip_and_tamper() -> None:
    name = "example.com/log"
    v = Verifier.parse(verifier_key(name, PUB))
    cp = Checkpoint(name, 5, b"\x07" * 32)
    note = sign_note(cp.text(), name, KEY)
    root_b64 = base64.b64encode(b"\x07" * 32).decode()
    assert note.startswith(f"{name}\n5\n{root_b64}\n\n— {name} ")
    assert open_checkpoint(note, v) == cp
    for i in range(len(note.encode()) - 1):  # every single-byte change is caught
        b = bytearray(note.encode())
        b[i] ^= 0x01
        with pytest.raises(VerificationError):
            open_checkpoint(bytes(b), v)
    with pytest.raises(VerificationError):
        open_note(note, [])
    other = Verifier.parse(
        verifier_key(name, ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    )
    with pytest.raises(VerificationError):
        open_note(note, [other])
    # an unknown cosigner is ignored, a known one must verify
    cosigned = note + "— witness.example " + base64.b64encode(b"\x00" * 68).decode() + "\n"
    assert open_note(cosigned, [v])[1] == [name]


def test_checkpoint_origin_must_match_key_name() -> None:
    note = sign_note(
        Checkpoint("other.example/log", 1, b"\x00" * 32).text(), "example.com/log", KEY
    )
    with pytest.raises(VerificationError, match="origin"):
        open_checkpoint(note, Verifier.parse(verifier_key("example.com/log", PUB)))


@pytest.mark.parametrize(
    "body",
    [
        "o\n01\n" + "A" * 43 + "=\n",
        "o\n1\nAAAA\n",
        "o\n-1\n" + "A" * 43 + "=\n",
        "\n1\n" + "A" * 43 + "=\n",
        "o\n1\n",
    ],
)
def test_checkpoint_parse_rejects(body: str) -> None:
    with pytest.raises(VerificationError):
        Checkpoint.parse(body)


# -- receipts ---------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    st.integers(0, 2**40),
    st.lists(st.binary(min_size=32, max_size=32), max_size=10),
    st.one_of(st.none(), st.binary(max_size=40)),
)
def test_receipt_roundtrip(index: int, proof: list[bytes], extra: bytes | None) -> None:
    r = Receipt(index, tuple(proof), "o\n1\n" + "A" * 43 + "=\n\n— o AAAA\n", extra)
    assert Receipt.parse(r.text()) == r


@pytest.mark.parametrize(
    "text",
    [
        "",
        "c2sp.org/tlog-proof@v1\n",
        "c2sp.org/tlog-proof@v2\nindex 0\n\nx\n",
        "c2sp.org/tlog-proof@v1\nindex 01\n\nx\n",
        "c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\nx\n",
        "c2sp.org/tlog-proof@v1\nextra !!\nindex 1\n\nx\n",
        "garbage\x00\n\n",
    ],
)
def test_receipt_parse_rejects(text: str) -> None:
    with pytest.raises(VerificationError):
        Receipt.parse(text)


def test_statement_canonical_is_stable() -> None:
    assert intoto.canonical(ST) == rfc8785.dumps(json.loads(intoto.canonical(ST)))


def test_receipt_rejects_non_canonical_base64() -> None:
    h = base64.b64encode(b"\x01" * 32).decode()  # ends in "E=" with 2 unused bits
    bad = h[:-2] + "F="  # same bytes, unused bits set
    assert base64.b64decode(bad) == b"\x01" * 32
    cp = "o\n1\n" + "A" * 43 + "=\n\n— o AAAA\n"
    assert Receipt.parse(f"c2sp.org/tlog-proof@v1\nindex 0\n{h}\n\n{cp}").proof == (b"\x01" * 32,)
    with pytest.raises(VerificationError, match="canonical"):
        Receipt.parse(f"c2sp.org/tlog-proof@v1\nindex 0\n{bad}\n\n{cp}")
    with pytest.raises(VerificationError, match="canonical"):
        Receipt.parse(f"c2sp.org/tlog-proof@v1\nextra QR==\nindex 0\n\n{cp}")
