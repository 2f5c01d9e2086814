"""The chain layer (private): contracts, backends and clients.

Public names are re-exported by the package's public API, not imported from here.
"""

from __future__ import annotations

from ._agreements import (
    MAX_PURPOSE_BYTES,
    DataAgreementsClient,
    OfferInfo,
    RequestInfo,
    RequestStatus,
)
from ._artifacts import CONTRACT_NAMES, REQUIRED_CONTRACTS, Artifact, load_artifact
from ._backend import ChainBackend, RawLog, Receipt, TransactionReverted
from ._clients import (
    MAX_PROOF_HASHES,
    AnchoredCheckpoint,
    AnchorRecord,
    CheckpointRegistryClient,
    Identity,
    IdentityRegistryClient,
    LogInfo,
    View,
    log_id_of,
    read_all,
)
from ._deployment import Deployment, deploy_all, deploy_missing, load_deployment
from ._embedded import DEFAULT_EMBEDDED_CHAIN_ID, EmbeddedBackend
from ._rpc import RpcBackend
from ._swarm import (
    MAX_MEMBERS,
    MAX_NODE_URL_BYTES,
    AggregationRule,
    RoundInfo,
    RoundOutcome,
    RoundStatus,
    SwarmInfo,
    SwarmRoundsClient,
)

__all__ = [
    "CONTRACT_NAMES",
    "DEFAULT_EMBEDDED_CHAIN_ID",
    "MAX_MEMBERS",
    "MAX_NODE_URL_BYTES",
    "MAX_PROOF_HASHES",
    "MAX_PURPOSE_BYTES",
    "REQUIRED_CONTRACTS",
    "AggregationRule",
    "AnchorRecord",
    "AnchoredCheckpoint",
    "Artifact",
    "ChainBackend",
    "CheckpointRegistryClient",
    "DataAgreementsClient",
    "Deployment",
    "EmbeddedBackend",
    "Identity",
    "IdentityRegistryClient",
    "LogInfo",
    "OfferInfo",
    "RawLog",
    "Receipt",
    "RequestInfo",
    "RequestStatus",
    "RoundInfo",
    "RoundOutcome",
    "RoundStatus",
    "RpcBackend",
    "SwarmInfo",
    "SwarmRoundsClient",
    "TransactionReverted",
    "View",
    "deploy_all",
    "deploy_missing",
    "load_artifact",
    "load_deployment",
    "log_id_of",
    "read_all",
]
