"""Real-process test harness: Synapse (single process or workers), PostgreSQL, Redis.

Everything here starts genuine servers on loopback ports in temporary directories
and talks to them over HTTP; nothing in Synapse is mocked.
"""

from tests.harness.client import MatrixClient, MatrixError, register_with_shared_secret
from tests.harness.postgres import PostgresServer, PostgresUnavailableError
from tests.harness.process import ManagedProcess, ProcessStartError, SynapseProcess
from tests.harness.redis import RedisServer, RedisUnavailableError
from tests.harness.synapse import INFO_PATH, Homeserver, HomeserverFactory
from tests.harness.tls import CertificateAuthority
from tests.harness.workers import CLIENT_WORKER, EVENT_PERSISTER, MAIN, WorkerDeployment

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
