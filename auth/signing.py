"""Ed25519 signatures for consent receipts, and the public key that verifies them.

The key comes from a setting (a PEM private key, or the 32 raw bytes in base64); development
generates one and keeps it in the data folder. The public key is published as a JSON Web Key
(RFC 8037) whose key id is its RFC 7638 thumbprint, so a receipt names the key that signed it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "Ed25519"


class SigningKeyError(ValueError):
    """The configured signing key is not an Ed25519 private key."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def canonical_json(value: object) -> bytes:
    """The bytes a receipt's signature covers: JSON with keys sorted, no insignificant
    whitespace, UTF-8. For receipts (strings, whole numbers, booleans, null; ASCII keys) this is
    what RFC 8785 (JCS) gives too."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def load_private_key(text: str) -> Ed25519PrivateKey:
    """A PEM (PKCS#8) Ed25519 private key, or its 32 raw bytes in base64 (standard or URL-safe)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as error:
            raise SigningKeyError("not a readable unencrypted PEM private key") from error
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError("the PEM key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise SigningKeyError("neither PEM nor base64") from error
    if len(raw) != 32:
        raise SigningKeyError("a raw Ed25519 private key is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def throwaway_key() -> str:
    """A key for a configuration built by hand (tests): receipts verify until the process ends."""
    return _pem(Ed25519PrivateKey.generate())


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def development_key(data_dir: Path) -> str:
    """One generated key per checkout, so receipts keep verifying across restarts."""
    path = data_dir / "receipt_signing_key.pem"
    if path.exists():
        return path.read_text()
    data_dir.mkdir(parents=True, exist_ok=True)
    pem = _pem(Ed25519PrivateKey.generate())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(pem)
    return pem


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    members = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    thumbprint = _b64url(hashlib.sha256(canonical_json(members)).digest())
    return {**members, "kid": thumbprint, "alg": "Ed25519", "use": "sig"}


class ReceiptSigner:
    """Signs receipts with the configured key; built once per process."""

    def __init__(self, private_key_text: str) -> None:
        self._key = load_private_key(private_key_text)
        self.jwk = public_jwk(self._key.public_key())
        self.key_id = self.jwk["kid"]

    def sign(self, payload: bytes) -> str:
        """The signature, base64url without padding."""
        return _b64url(self._key.sign(payload))

    def compact_jws(self, payload: bytes) -> str:
        """`payload` as a JWS in compact serialisation (RFC 7515; algorithm "Ed25519", RFC 9864)
        with the key id in its protected header: what any JOSE library checks with the key set."""
        header = canonical_json({"alg": "Ed25519", "kid": self.key_id, "typ": "JOSE"})
        signing_input = f"{_b64url(header)}.{_b64url(payload)}"
        return f"{signing_input}.{self.sign(signing_input.encode())}"
