"""The one place that knows how a harness Synapse is configured.

Both ``Homeserver`` (one process) and ``WorkerDeployment`` (main plus workers) build
their files here, so option names for the pinned Synapse release live in one spot.
Files are written as JSON, which YAML parsers read unchanged.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import signedjson.key

from harness.postgres import PostgresServer
from harness.tls import CertificateAuthority, ServerCertificate

JsonDict = dict[str, Any]

MODULE_PATH = "synapse_room_connect.RoomConnectModule"
MODULE_LOGGER = "synapse_room_connect"

# Loopback, so homeservers of one test run can federate and fetch each other's
# keys; Synapse blocks these ranges for outbound requests by default.
LOOPBACK_RANGES = ["127.0.0.0/8", "::1/128"]

_UNLIMITED = {"per_second": 10_000, "burst_count": 100_000}

# Every client-side limiter Synapse 1.163 reads (synapse/config/ratelimiting.py).
# Tests create many users, rooms and events in seconds; the defaults would throttle
# them and make results depend on timing.
RATE_LIMITS: JsonDict = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {
        "address": _UNLIMITED,
        "account": _UNLIMITED,
        "failed_attempts": _UNLIMITED,
    },
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {
        "per_room": _UNLIMITED,
        "per_user": _UNLIMITED,
        "per_issuer": _UNLIMITED,
    },
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
    # Inbound federation: no delaying or rejecting of a busy peer.
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 10_000,
        "sleep_delay": 0,
        "reject_limit": 100_000,
        "concurrent": 100,
    },
    "federation_rr_transactions_per_room_per_second": 10_000,
}


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> JsonDict:
    """``base`` with ``overrides`` applied; nested mappings merge, anything else replaces.

    A value of ``None`` in ``overrides`` deletes the key, so a test can drop a
    default option entirely.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def write_config(path: Path, config: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(config, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def generate_signing_key(path: Path) -> None:
    key = signedjson.key.generate_signing_key(f"a_{secrets.token_hex(2)}")
    with path.open("w", encoding="utf-8") as out:
        signedjson.key.write_signing_keys(out, [key])


def write_log_config(path: Path, log_path: Path) -> None:
    """A Python logging config: everything at INFO to ``log_path``, the module at DEBUG."""
    config: JsonDict = {
        "version": 1,
        "formatters": {
            "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                "%(request)s - %(message)s"
            }
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(log_path),
                "encoding": "utf8",
            }
        },
        "loggers": {
            "synapse": {"level": "INFO"},
            # Every SQL statement at DEBUG would drown the module's own lines.
            "synapse.storage.SQL": {"level": "INFO"},
            MODULE_LOGGER: {"level": "DEBUG"},
        },
        "root": {"level": "INFO", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }
    write_config(path, config)


def http_listener(
    port: int, resources: Sequence[str], *, tls: bool = False, host: str = "127.0.0.1"
) -> JsonDict:
    return {
        "port": port,
        "bind_addresses": [host],
        "type": "http",
        "tls": tls,
        "x_forwarded": False,
        "resources": [{"names": list(resources), "compress": False}],
    }


def metrics_listener(port: int, host: str = "127.0.0.1") -> JsonDict:
    return {"port": port, "bind_addresses": [host], "type": "metrics"}


def sqlite_database(path: Path) -> JsonDict:
    return {"name": "sqlite3", "args": {"database": str(path)}}


def postgres_database(
    postgres: PostgresServer, dbname: str, *, max_connections: int = 5
) -> JsonDict:
    return {
        "name": "psycopg2",
        "args": {
            "user": postgres.user,
            "host": postgres.host,
            "port": postgres.port,
            "database": dbname,
            "cp_min": 1,
            "cp_max": max_connections,
        },
    }


def module_entry(module_config: Mapping[str, Any] | None) -> JsonDict:
    return {"module": MODULE_PATH, "config": dict(module_config or {})}


def homeserver_config(
    *,
    directory: Path,
    server_name: str,
    public_baseurl: str,
    listeners: Sequence[JsonDict],
    database: JsonDict,
    log_config_path: Path,
    tls_cert_path: Path,
    tls_key_path: Path,
    server_secrets: Mapping[str, str],
    module_config: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None = None,
) -> JsonDict:
    """The shared ``homeserver.yaml`` of a harness homeserver (and its workers).

    ``directory`` must already hold ``signing.key``; ``server_secrets`` maps secret
    options (registration_shared_secret, macaroon_secret_key, ...) to values.
    """
    config: JsonDict = {
        "server_name": server_name,
        "public_baseurl": public_baseurl,
        "report_stats": False,
        "listeners": list(listeners),
        "database": database,
        "log_config": str(log_config_path),
        "media_store_path": str(directory / "media_store"),
        "signing_key_path": str(directory / "signing.key"),
        **server_secrets,
        "enable_registration": False,
        # Hashing passwords at the production cost would dominate user creation.
        "bcrypt_rounds": 4,
        "tls_certificate_path": str(tls_cert_path),
        "tls_private_key_path": str(tls_key_path),
        "federation_verify_certificates": False,
        # 1.163 still spells these the old way ("whitelist", not "allowlist").
        "ip_range_whitelist": LOOPBACK_RANGES,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "enable_metrics": True,
        # Presence produces /sync wake-ups unrelated to what a test waits for.
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        **copy.deepcopy(RATE_LIMITS),
        "modules": [module_entry(module_config)],
    }
    return deep_merge(config, overrides or {})


def worker_config(
    *,
    worker_name: str,
    listeners: Sequence[JsonDict],
    log_config_path: Path,
) -> JsonDict:
    """The per-worker file passed as a second ``-c`` after the shared homeserver.yaml."""
    return {
        "worker_app": "synapse.app.generic_worker",
        "worker_name": worker_name,
        "worker_listeners": list(listeners),
        "worker_log_config": str(log_config_path),
    }


class ServerDirectory:
    """The config directory of one homeserver deployment (single process or workers).

    Holds what every process of the deployment shares (TLS certificate, signing
    key, homeserver.yaml) and writes each process's own files next to them.
    """

    def __init__(self, directory: Path, ca: CertificateAuthority | None = None) -> None:
        self.path = directory
        ca = ca or CertificateAuthority(directory / "ca")
        self.certificate: ServerCertificate = ca.issue_server_certificate(directory, stem="tls")
        generate_signing_key(directory / "signing.key")
        self.homeserver_yaml = directory / "homeserver.yaml"
        # Fixed for the directory's lifetime, so rewriting the config for a restart
        # does not change them under running clients.
        self.registration_shared_secret = secrets.token_hex(16)
        self.server_secrets = {
            "registration_shared_secret": self.registration_shared_secret,
            "macaroon_secret_key": secrets.token_hex(32),
            "form_secret": secrets.token_hex(32),
        }

    def log_files(self, stem: str) -> tuple[Path, Path]:
        """Write ``<stem>.log_config.yaml``; return it and the ``<stem>.log`` it logs to."""
        log_config_path = self.path / f"{stem}.log_config.yaml"
        log_path = self.path / f"{stem}.log"
        write_log_config(log_config_path, log_path)
        return log_config_path, log_path

    def write_homeserver_yaml(
        self,
        *,
        server_name: str,
        public_baseurl: str,
        listeners: Sequence[JsonDict],
        database: JsonDict,
        log_config_path: Path,
        module_config: Mapping[str, Any] | None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Path:
        write_config(
            self.homeserver_yaml,
            homeserver_config(
                directory=self.path,
                server_name=server_name,
                public_baseurl=public_baseurl,
                listeners=listeners,
                database=database,
                log_config_path=log_config_path,
                tls_cert_path=self.certificate.cert_path,
                tls_key_path=self.certificate.key_path,
                server_secrets=self.server_secrets,
                module_config=module_config,
                overrides=overrides,
            ),
        )
        return self.homeserver_yaml

    def write_worker_yaml(
        self, worker_name: str, listeners: Sequence[JsonDict]
    ) -> tuple[Path, Path]:
        """Write ``<worker_name>.yaml`` and its log config; return it and its log path."""
        log_config_path, log_path = self.log_files(worker_name)
        path = self.path / f"{worker_name}.yaml"
        write_config(
            path,
            worker_config(
                worker_name=worker_name, listeners=listeners, log_config_path=log_config_path
            ),
        )
        return path, log_path
