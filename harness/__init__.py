"""Real-process test harness: Synapse (single process or workers), PostgreSQL, Redis.

Everything here starts genuine servers on loopback ports in temporary directories
and talks to them over HTTP; nothing in Synapse is mocked.
"""

from harness.client import MatrixClient, MatrixError, register_with_shared_secret
from harness.postgres import PostgresServer, PostgresUnavailableError
from harness.process import ManagedProcess, ProcessStartError, SynapseProcess
from harness.redis import RedisServer, RedisUnavailableError
from harness.synapse import INFO_PATH, Homeserver, HomeserverFactory
from harness.tls import CertificateAuthority
from harness.workers import CLIENT_WORKER, EVENT_PERSISTER, MAIN, WorkerDeployment

__all__ = [
    "CLIENT_WORKER",
    "EVENT_PERSISTER",
    "INFO_PATH",
    "MAIN",
    "CertificateAuthority",
    "Homeserver",
    "HomeserverFactory",
    "ManagedProcess",
    "MatrixClient",
    "MatrixError",
    "PostgresServer",
    "PostgresUnavailableError",
    "ProcessStartError",
    "RedisServer",
    "RedisUnavailableError",
    "SynapseProcess",
    "WorkerDeployment",
    "register_with_shared_secret",
]
