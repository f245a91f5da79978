"""How the SDK reaches the server: TLS or mTLS, auth headers, compression."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

COMPRESSIONS = ("gzip", "deflate")

MAX_RECONNECT_BACKOFF_MS = 1000
"""Cap on gRPC's own wait between reconnects to a server that went away (its default grows to 120 s).

A server that is back is then connected to within a second, however long it was down.
"""


@dataclass(frozen=True)
class Connection:
    """Transport settings shared by ``Client`` and ``AsyncClient``.

    * ``root_certificates``: PEM file of the CAs that signed the server's
      certificate; setting it (or ``ssl=True``) turns TLS on.
    * ``private_key`` + ``certificate_chain``: PEM files of the client's key
      and certificate, for mutual TLS.
    * ``headers``: metadata sent with every call, e.g.
      ``{"authorization": "Bearer ..."}``.
    * ``compression``: ``"gzip"`` or ``"deflate"`` for request bodies.
    """

    ssl: bool = False
    root_certificates: Optional[str] = None
    private_key: Optional[str] = None
    certificate_chain: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)
    compression: Optional[str] = None

    def __post_init__(self) -> None:
        if self.compression is not None and self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)} or None, got {self.compression!r}")
        if bool(self.private_key) != bool(self.certificate_chain):
            raise ValueError("mutual TLS needs both private_key and certificate_chain")
        for name in ("root_certificates", "private_key", "certificate_chain"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name} file {path!r} does not exist")

    @property
    def uses_tls(self) -> bool:
        return self.ssl or bool(self.root_certificates or self.private_key)

    def channel_arguments(self, server_name: Optional[str] = None) -> List[Tuple[str, Any]]:
        """gRPC channel options: tritonclient's own defaults, plus a short reconnect backoff.

        ``server_name`` is the name the server's TLS certificate carries, for an
        endpoint reached by an address that DNS resolved that name to.
        """
        from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

        keepalive = KeepAliveOptions()
        options: List[Tuple[str, Any]] = [
            ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
        ]
        if server_name and self.uses_tls:
            options.append(("grpc.ssl_target_name_override", server_name))
        return options

    def client_arguments(self, server_name: Optional[str] = None) -> Dict[str, Any]:
        """Keyword arguments of tritonclient's ``InferenceServerClient`` (grpc and grpc.aio)."""
        arguments: Dict[str, Any] = {"channel_args": self.channel_arguments(server_name)}
        if not self.uses_tls:
            return arguments
        return {
            **arguments,
            "ssl": True,
            "root_certificates": self.root_certificates,
            "private_key": self.private_key,
            "certificate_chain": self.certificate_chain,
        }
