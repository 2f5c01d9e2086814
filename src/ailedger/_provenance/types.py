"""The statement types of AI provenance (DESIGN §5): the shared vocabulary.

Every module of this package builds and reads statements through these names, so
datasets, runs, evaluations, predictions and lineage agree on one shape.

Digests: every ``digest`` is an in-toto DigestSet ``{"sha256": <64 lowercase hex>}``.
Lineage links statements by these digests:

- a **dataset** is identified by the sha256 of its manifest (RFC 8785 JSON, stored in the
  blob store); its statement's subject is ``{name: "dataset:<name>", digest: {sha256: manifest}}``;
- a **model** or any file artifact by the sha256 of its bytes;
- a **prediction batch** by the sha256 of its leaves file (JSON lines, in the blob store).

A run's ``resolvedDependencies`` name datasets, base models and code by these digests, with
``annotations.kind`` one of ``dataset``, ``model``, ``code``, ``file``.
"""

from __future__ import annotations

from typing import Any, Final

DATASET: Final = "https://ailedger.dev/dataset/v1"
TRAINING: Final = "https://slsa.dev/provenance/v1"  # SLSA Provenance v1, buildType below
TRAINING_BUILD_TYPE: Final = "https://ailedger.dev/training/v1"
COMMAND_BUILD_TYPE: Final = "https://ailedger.dev/command/v1"  # `ailedger run -- CMD`
EVALUATION: Final = "https://ailedger.dev/evaluation/v1"
PREDICTIONS: Final = "https://ailedger.dev/predictions/v1"
DATA_ACCESS: Final = "https://ailedger.dev/data-access/v1"  # later (sharing)
FEDERATED_ROUND: Final = "https://ailedger.dev/federated-round/v1"  # docs/swarm.md
# A swarm member's signed claim about its own update: which registered datasets made it.
SWARM_CONTRIBUTION: Final = "https://ailedger.dev/swarm-contribution/v1"  # docs/swarm.md

FINGERPRINT_ALG: Final = "rfc9162-sha256"

KIND_DATASET: Final = "dataset"
KIND_MODEL: Final = "model"
KIND_CODE: Final = "code"
KIND_FILE: Final = "file"
# A dataset a swarm member says (in its signed contribution) it trained on; registered in
# that member's own log, so another member's lineage names it without holding its statement.
KIND_MEMBER_DATASET: Final = "member-dataset"


def digest(sha256_hex: str) -> dict[str, str]:
    return {"sha256": sha256_hex}


def dataset_subject_name(name: str) -> str:
    return f"dataset:{name}"


# Shapes, for reference (validated by the modules that build them):
#
# DATASET predicate
#   {"name": str, "fingerprint": {"algorithm": "rfc9162-sha256", "mode": "files"|"records",
#    "root": hex, "leaves": int, "files": int, "bytes": int},
#    "manifest": {"digest": {"sha256": hex}, "size": int, "mediaType": "application/json"},
#    "license": str|None, "origin": str|None, "preparation": [str], "schema": {...}|None,
#    "consent": [str], "registeredAt": RFC 3339,
#    "encryption"?: {"scheme": "ailedger-sealed/v1", "aead": "AES-256-GCM", "chunk": int,
#                    "keyWrapping": "HPKE-base X25519-HKDF-SHA256 AES-256-GCM",
#                    "index": {"digest", "size", "mediaType"}}}   (docs/encryption.md)
#   Manifest (blob): {"version": 1, "mode": ..., "files": [{"path", "size", "sha256"[, "records"]}]}
#   Leaves: files mode: RFC 8785 JSON of {"path","sha256","size"}, in path order (POSIX
#   relative paths, sorted by UTF-8 bytes); records mode: each record's bytes (a CSV/JSONL
#   line without its line ending; a CSV header line is not a record), files in path order.
#
# TRAINING predicate (SLSA v1): buildDefinition {buildType, externalParameters {name, params,
#   command?}, internalParameters {python, platform, packages {name: version}},
#   resolvedDependencies [{name, digest, uri?, annotations {kind}}]},
#   runDetails {builder {id: "https://ailedger.dev/builder/<workspace name>"},
#   metadata {invocationId, startedOn, finishedOn},
#   byproducts [{name: "metrics", annotations {metrics}}, {name: "outcome",
#   annotations {status: "succeeded"|"failed", error?}}]}
#   Each byproduct is an in-toto ResourceDescriptor, which MUST have one of uri, digest,
#   content: besides name and annotations (what readers use) it carries
#   content: base64(RFC 8785 JSON of the annotations), mediaType: "application/json",
#   digest {sha256: sha256 of that JSON}.
#   Integers outside ±(2^53-1) in params/metrics are recorded as decimal strings.
#   Subject: the output artifacts (models); a failed run with no outputs has the subject
#   {name: "run:<invocationId>", digest: sha256 of the canonical externalParameters}.
#
# EVALUATION predicate {"model": {name, digest}, "dataset": {name, digest}, "metrics": {...},
#   "run": invocationId|None, "evaluatedAt": RFC 3339}; subject: the model.
#
# PREDICTIONS predicate {"model": {name, digest}, "count": int, "root": hex (RFC 9162 over
#   leaves), "leaves": {"digest": {"sha256": hex}, "size": int, "mediaType":
#   "application/jsonl"}, "from": RFC 3339, "to": RFC 3339}; subject:
#   {name: "predictions:<batch id>", digest: sha256 of the leaves blob}. Leaf = RFC 8785 JSON
#   of {"input_sha256", "output_sha256", "time"}.

# SWARM_CONTRIBUTION predicate {"swarm": {"id", "chainId", "contract"}, "round": int,
#   "member": address, "update": {"digest": {sha256}, "numExamples": int},
#   "datasets": [{"name", "version", "digest": {sha256: manifest},
#                 "fingerprint": {"algorithm", "root"},
#                 "statement": {"origin", "index", "envelope": {sha256}}}]};
#   subject: {name: "swarm:<id>/round:<r>/update", digest: the committed update}.

Predicate = dict[str, Any]
