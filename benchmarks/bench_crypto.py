"""Encryption at rest: ailedger-sealed/v1 encrypt/decrypt throughput per core.

Streams 1 GiB (``--quick``: 256 MiB) through ``seal_stream`` and ``open_stream`` in
memory (a zero-copy source, a counting sink) on one thread, 1 MiB chunks, median of 3.
Beside it, measured in the same run on the same buffer sizes:

- **floor**: ``cryptography``'s raw ``AESGCM.encrypt``/``decrypt`` over one 1 MiB buffer
  in a loop (the AEAD alone, no framing, no reads);
- **openssl speed**: ``openssl speed -evp aes-256-gcm -bytes 1048576 -seconds 1``, if the
  binary is present.

Also: sealing a file on tmpfs (/dev/shm) into another file, and HPKE wrap/unwrap rate.
Prints a markdown table.

    .venv/bin/python benchmarks/bench_crypto.py [--quick]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ailedger._crypto import hpke_wrap, sealed

MiB = 1 << 20
GB = 1e9


class Source:
    """Serves ``total`` bytes by repeating one buffer: no allocation per read."""

    def __init__(self, block: bytes, total: int) -> None:
        self.block, self.left = block, total
        self.view = memoryview(block)

    def read(self, n: int, /) -> bytes:
        n = min(n, self.left)
        self.left -= n
        # bytes() of a slice copies, as a file read would
        return bytes(self.view[:n]) if n < len(self.block) else self.block


class Sink:
    def __init__(self) -> None:
        self.n = 0

    def write(self, b: bytes, /) -> int:
        self.n += len(b)
        return len(b)


class SealedSource:
    """Replays one sealed stream's header and chunks as if the stream were ``total`` long."""

    def __init__(self, key: bytes, block: bytes, chunks: int) -> None:
        # Seal once, then serve it: decrypting the same chunks over and over costs the same.
        buf = io.BytesIO()
        sealed.seal_stream(key, Source(block, len(block) * chunks), buf)
        self.data = buf.getvalue()
        self.pos = 0

    def read(self, n: int, /) -> bytes:
        b = self.data[self.pos : self.pos + n]
        self.pos += len(b)
        return b


def median_rate(fn: Callable[[], int], runs: int) -> float:
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def paired(fn: Callable[[], int], base: Callable[[], int], runs: int) -> tuple[float, float]:
    """Median rates of ``fn`` and ``base``, alternated run by run so that load from other
    processes on a shared machine hits both alike."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(runs):
        a.append(median_rate(fn, 1))
        b.append(median_rate(base, 1))
    return statistics.median(a), statistics.median(b)


def openssl_speed() -> float | None:
    exe = shutil.which("openssl")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "speed", "-evp", "aes-256-gcm", "-bytes", str(MiB), "-seconds", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # last line: "AES-256-GCM   <rate>k" in 1000s of bytes per second
    m = re.search(r"aes-256-gcm\s+([\d.]+)k\s*$", out.strip(), re.IGNORECASE | re.MULTILINE)
    return float(m.group(1)) * 1000 if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="256 MiB instead of 1 GiB")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    total = (256 if args.quick else 1024) * MiB
    chunks = total // MiB
    key = sealed.new_key()
    block = os.urandom(MiB)
    aead = AESGCM(key)
    nonce = bytes(12)
    ct_block = aead.encrypt(nonce, block, b"")

    def raw_enc() -> int:
        for _ in range(chunks):
            aead.encrypt(nonce, block, b"")
        return total

    def raw_dec() -> int:
        for _ in range(chunks):
            aead.decrypt(nonce, ct_block, b"")
        return total

    def seal_mem() -> int:
        return sealed.seal_stream(
            key, Source(block, total), Sink(), hash_plaintext=False
        ).plaintext_bytes

    def seal_mem_hashed() -> int:
        return sealed.seal_stream(key, Source(block, total), Sink()).plaintext_bytes

    ss = SealedSource(key, block, chunks)

    def open_mem() -> int:
        ss.pos = 0
        return sealed.open_stream(key, ss, Sink())

    rows: list[tuple[str, float, float, str]] = []
    s_enc, f_enc = paired(seal_mem, raw_enc, args.runs)
    s_dec, f_dec = paired(open_mem, raw_dec, args.runs)
    s_hashed, f_enc2 = paired(seal_mem_hashed, raw_enc, args.runs)
    rows.append(("seal_stream, in memory", s_enc, f_enc, "raw AESGCM.encrypt, 1 MiB"))
    rows.append(("open_stream, in memory", s_dec, f_dec, "raw AESGCM.decrypt, 1 MiB"))
    rows.append(
        ("seal_stream + SHA-256 of plaintext (data add)", s_hashed, f_enc2, "raw AESGCM.encrypt")
    )

    # File to file on tmpfs: what `data add --encrypt` does per file, minus fsync.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    tmp = tempfile.mkdtemp(dir=shm)
    try:
        fsize = min(total, 256 * MiB)  # tmpfs is RAM: keep two copies small
        src, enc, dec = (os.path.join(tmp, n) for n in ("plain", "sealed", "out"))
        with open(src, "wb") as f:
            for _ in range(fsize // MiB):
                f.write(block)

        def seal_file() -> int:
            with open(src, "rb") as a, open(enc, "wb") as b:
                return sealed.seal_stream(key, a, b, hash_plaintext=False).plaintext_bytes

        def open_file() -> int:
            with open(enc, "rb") as a, open(dec, "wb") as b:
                return sealed.open_stream(key, a, b)

        def copy_file() -> int:
            with open(src, "rb") as a, open(dec, "wb") as b:
                shutil.copyfileobj(a, b, MiB)
            return fsize

        # the copy writes a file of its own, as sealing and opening each do
        def copy_file2() -> int:
            with open(src, "rb") as a, open(enc + ".copy", "wb") as b:
                shutil.copyfileobj(a, b, MiB)
            return fsize

        sf, c1 = paired(seal_file, copy_file2, args.runs)
        of, c2 = paired(open_file, copy_file, args.runs)
        what = f"({fsize // MiB} MiB)"
        rows.append((f"seal file→file, tmpfs {what}", sf, c1, "copyfileobj 1 MiB, tmpfs"))
        rows.append((f"open file→file, tmpfs {what}", of, c2, "copyfileobj 1 MiB, tmpfs"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ossl = openssl_speed()
    print(
        f"# ailedger-sealed/v1 throughput ({total // MiB} MiB, 1 MiB chunks, one core, median of {args.runs})\n"
    )
    print("| operation | GB/s | baseline | baseline GB/s | ratio |")
    print("|---|---:|---|---:|---:|")
    for name, rate, base, bname in rows:
        print(f"| {name} | {rate / GB:.2f} | {bname} | {base / GB:.2f} | {rate / base:.2f} |")
    if ossl is not None:
        print(
            f"| (reference) | | openssl speed -evp aes-256-gcm, 1 MiB blocks | {ossl / GB:.2f} | |"
        )

    # HPKE: one wrap per grant, one unwrap per fetch.
    sk = x25519.X25519PrivateKey.generate()
    pub = sk.public_key().public_bytes_raw()
    digest = "ab" * 32
    n = 500
    t = time.perf_counter()
    docs = [hpke_wrap.wrap_key(key, pub, digest) for _ in range(n)]
    w = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for d in docs:
        hpke_wrap.unwrap_key(d, sk)
    u = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(n):
        x25519.X25519PrivateKey.generate().exchange(sk.public_key())
    dh = n / (time.perf_counter() - t)
    print("\n| HPKE key wrapping | ops/s | baseline: X25519 keygen+DH ops/s | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| wrap_key | {w:,.0f} | {dh:,.0f} | {w / dh:.2f} |")
    print(f"| unwrap_key | {u:,.0f} | {dh:,.0f} | {u / dh:.2f} |")


if __name__ == "__main__":
    main()
