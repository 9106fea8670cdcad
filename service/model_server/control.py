"""Who may change the served models over the network (``HandleReloadConfigRequest``).

TF Serving accepts a reload from anyone who reaches its port; a reload can unload every
model or point ``base_path`` anywhere. Here it is off unless ``--enable_reload_config``
is given; then a request is accepted from a loopback peer, or, when ``--reload_secret_file``
is given, only with that secret in the ``housing-reload-secret`` gRPC metadata (from any
peer, loopback included), compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import grpc

from service.model_server.config import ConfigError
from service.model_server.errors import ServingError

SECRET_METADATA = "housing-reload-secret"
MIN_SECRET_BYTES = 16


@dataclass(frozen=True)
class ReloadPolicy:
    enabled: bool = False
    secret: bytes | None = None

    def authorize(self, peer: str, metadata: dict[str, str | bytes]) -> None:
        """Raise UNIMPLEMENTED (off) or PERMISSION_DENIED unless this caller may reload."""
        if not self.enabled:
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                "HandleReloadConfigRequest is disabled on this server "
                "(start it with --enable_reload_config)",
            )
        if self.secret is not None:
            sent = metadata.get(SECRET_METADATA, b"")
            sent = sent.encode() if isinstance(sent, str) else sent
            if not hmac.compare_digest(sent, self.secret):
                raise ServingError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"HandleReloadConfigRequest needs the shared secret in the "
                    f"{SECRET_METADATA!r} metadata",
                )
            return
        if not is_loopback_peer(peer):
            raise ServingError(
                grpc.StatusCode.PERMISSION_DENIED,
                "HandleReloadConfigRequest is accepted only from loopback on this server "
                "(or start it with --reload_secret_file and send the secret)",
            )


def is_loopback_peer(peer: str) -> bool:
    """gRPC peer strings: ``ipv4:127.0.0.1:5000``, ``ipv6:%5B::1%5D:5000`` (URL-encoded
    brackets), ``unix:/path``."""
    kind, _, rest = peer.partition(":")
    rest = unquote(rest)
    if kind in ("unix", "unix-abstract"):
        return True  # only local users can reach a unix socket
    if kind == "ipv4":
        host = rest.rsplit(":", 1)[0]
    elif kind == "ipv6":
        host = rest.rsplit(":", 1)[0].strip("[]").split("%", 1)[0]
    else:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def read_secret_file(path: Path) -> bytes:
    """The secret: the file's content without surrounding whitespace, at least 16 bytes."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"--reload_secret_file {path}: {exc.strerror}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"--reload_secret_file {path}: the secret must be at least {MIN_SECRET_BYTES} bytes"
        )
    return secret
