"""ed25519 signing keys (PyNaCl): generate, load, sign, verify.

Files are one line of text each: `NAME.key` holds "mix-ed25519-secret <base64 seed>",
`NAME.pub` holds "mix-ed25519-public <base64 key>". A key's id is the first 16 hex
digits of the sha256 of its public key; signatures name the id so that a client can
say which key it is missing.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from mix.errors import MixError, TrustError

SECRET_TAG = "mix-ed25519-secret"
PUBLIC_TAG = "mix-ed25519-public"


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    raw: bytes
    source: str

    @property
    def id(self) -> str:
        return key_id(self.raw)

    def verify(self, data: bytes, signature: bytes) -> bool:
        from nacl.exceptions import BadSignatureError
        from nacl.signing import VerifyKey

        try:
            VerifyKey(self.raw).verify(data, signature)
        except BadSignatureError:
            return False
        return True


def _read_line(path: Path, tag: str) -> bytes:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise MixError(f"cannot read key file {path}: {e}") from None
    parts = text.split()
    if len(parts) != 2 or parts[0] != tag:
        raise TrustError(f"{path} is not a mix key file (expected a line '{tag} BASE64')")
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise TrustError(f"{path}: key is not valid base64") from None
    if len(raw) != 32:
        raise TrustError(f"{path}: an ed25519 key is 32 bytes, this one is {len(raw)}")
    return raw


def generate(name: str | Path) -> tuple[Path, Path]:
    """Write NAME.key (mode 0600) and NAME.pub; refuse to overwrite an existing key."""
    from nacl.signing import SigningKey

    base = Path(name)
    key_path, pub_path = Path(f"{base}.key"), Path(f"{base}.pub")
    if key_path.exists() or pub_path.exists():
        raise MixError(f"{key_path} or {pub_path} already exists",
                       "remove it first or choose another name; mix never overwrites a key")
    key_path.parent.mkdir(parents=True, exist_ok=True)
    sk = SigningKey.generate()
    seed = bytes(sk)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{SECRET_TAG} {base64.b64encode(seed).decode()}\n")
    pub_path.write_text(f"{PUBLIC_TAG} {base64.b64encode(bytes(sk.verify_key)).decode()}\n")
    return key_path, pub_path


def sign(key_path: Path, data: bytes) -> tuple[str, bytes]:
    """Return (key id, 64-byte detached signature) of data."""
    from nacl.signing import SigningKey

    sk = SigningKey(_read_line(Path(key_path), SECRET_TAG))
    return key_id(bytes(sk.verify_key)), sk.sign(data).signature


def load_public(path: Path) -> PublicKey:
    return PublicKey(_read_line(Path(path), PUBLIC_TAG), str(path))


def load_keyring(keys_dir: Path) -> dict[str, PublicKey]:
    """Every *.pub in keys_dir, by key id."""
    ring: dict[str, PublicKey] = {}
    if Path(keys_dir).is_dir():
        for p in sorted(Path(keys_dir).glob("*.pub")):
            k = load_public(p)
            ring[k.id] = k
    return ring
