"""How the SDK reaches the server: TLS or mTLS, auth headers, compression."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

COMPRESSIONS = ("gzip", "deflate")


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

    def client_arguments(self) -> Dict[str, Any]:
        """Keyword arguments of tritonclient's ``InferenceServerClient`` (grpc and grpc.aio)."""
        if not self.uses_tls:
            return {}
        return {
            "ssl": True,
            "root_certificates": self.root_certificates,
            "private_key": self.private_key,
            "certificate_chain": self.certificate_chain,
        }
