"""Checks that a tracker's store is writable or reachable, in about a second, before training starts."""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from transferlab.repro import redact

REACH_TIMEOUT_S = 2.0

DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}


class StoreUnreachable(Exception):
    """A tracker's store cannot be written or its server cannot be reached; the message says which and why."""


def check_mlflow_store(uri: str) -> None:
    """A SQLite file or a folder store must be writable (or creatable), a server must accept a connection."""
    scheme = urlsplit(uri).scheme.split("+")[0]
    if scheme == "sqlite":
        if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
            problem = _unwritable(Path(uri[len("sqlite:///") :]), database=True)
        else:
            problem = None
    elif scheme in ("", "file"):
        problem = _unwritable(Path(urlsplit(uri).path if scheme else uri))
    else:
        problem = _unreachable(uri)
    if problem:
        raise StoreUnreachable(f"store {redact(uri)}: {problem}")


def check_neptune_server() -> None:
    """The server an async or sync run talks to (named by the API token; the default app for ANONYMOUS)
    must accept a connection. A missing or malformed token is left for Neptune's own error."""
    from neptune.internal.credentials import Credentials

    try:
        credentials = Credentials.from_token()
    except Exception:  # Neptune reports a missing or invalid token itself, quickly
        return
    address = credentials.api_url_opt or credentials.token_origin_address
    problem = _unreachable(address)
    if problem:
        raise StoreUnreachable(f"server {redact(address)}: {problem}")


def _unwritable(path: Path, database: bool = False) -> Optional[str]:
    """Why the store at `path` (a database file, or a folder) cannot be written or created, or None."""
    path = path.expanduser().resolve()
    if database and path.exists():
        if path.is_dir():
            return f"{path} is a folder, not a database file"
        if not os.access(path, os.W_OK):
            return f"{path} is read-only"
    folder = path.parent if database else path
    while not folder.exists():  # the tracker creates missing folders, from the nearest existing one
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, so no folder can be made there"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"folder {folder} is not writable"
    return None


def _unreachable(address: str) -> Optional[str]:
    """Why a TCP connection to the address's host (or to its proxy) fails within REACH_TIMEOUT_S, or None."""
    try:
        parts = urlsplit(address)
        scheme, host = parts.scheme.split("+")[0], parts.hostname
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a malformed port: the client's own error says more
        return None
    if not host or not port:
        return None
    proxy = urllib.request.getproxies().get(scheme) if scheme in ("http", "https") else None
    if proxy and not urllib.request.proxy_bypass(host):
        proxied = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxied.hostname or host, proxied.port or 80
    try:
        with socket.create_connection((host, port), timeout=REACH_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"no connection to {host}:{port} within {REACH_TIMEOUT_S:g} s ({exc.strerror or exc})"


def sqlite_artifact_root(uri: str) -> Optional[str]:
    """`mlartifacts/` beside a SQLite store (created if needed); other stores choose their own."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///") :]).resolve()
    database.parent.mkdir(parents=True, exist_ok=True)
    return (database.parent / "mlartifacts").as_uri()
