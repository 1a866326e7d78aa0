"""The visitor id of before issue 22, read once so a returning visitor keeps their history.

Until then the page kept the visitor id in a ``gr.BrowserState`` (localStorage ``r1v_visitor``),
encrypted by Gradio's frontend with CryptoJS: ``base64(iv) + ":" + AES-256-CBC`` in OpenSSL's
``Salted__`` format, the passphrase being the hex SHA-256 of the key in ``<data dir>/browser_secret``
(that key was served in ``/config``, so the value protected nothing). On a visitor's first visit after
the upgrade the page sends that value once and removes it; :func:`old_visitor_id` decrypts it on the
server, and ``Store.rename_user`` gives the old id's history to the visitor's cookie id, which works
once (the old id no longer exists afterwards).

    from webui.legacy_id import migrate, old_visitor_id
    old = old_visitor_id(blob)          # the old id, or None (no value, no key, not ours, reserved)
    migrate(store, blob, current_user)  # on a page load: the old id's history to current_user(), once

Needs the ``cryptography`` package (requirements.txt); without it, or with ``R1V_MIGRATE_OLD_IDS=0``,
nothing is migrated. Encrypting (:func:`encrypt`) exists for the tests, which act as an old page.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets

log = logging.getLogger(__name__)

RESERVED = ("hf:", "anon-", "v:")  # ids the server derives; an old browser id never had these forms
MAX_BLOB = 4096


def _key(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).hexdigest().encode()


def _evp(passphrase: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey with MD5, one round: CryptoJS's passphrase key derivation."""
    out, block = b"", b""
    while len(out) < 48:
        block = hashlib.md5(block + passphrase + salt).digest()  # noqa: S324 - the format's own KDF
        out += block
    return out[:32], out[32:48]


def old_secret() -> str | None:
    """The key the old page encrypted with: ``R1V_BROWSER_SECRET``, else the data directory's file."""
    if os.environ.get("R1V_BROWSER_SECRET"):
        return os.environ["R1V_BROWSER_SECRET"]
    from tutor import settings

    path = settings.data_dir() / "browser_secret"
    return path.read_text(encoding="utf-8").strip() if path.exists() else None


def decrypt(blob: str, secret: str) -> str | None:
    """The plain text of a BrowserState value, or None when it is not one made with ``secret``."""
    try:
        from cryptography.hazmat.primitives import padding
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        log.warning("cryptography is not installed: old visitor ids are not migrated")
        return None
    try:
        _, ct = blob.split(":", 1)
        raw = base64.b64decode(ct, validate=True)
        if not raw.startswith(b"Salted__") or len(raw) < 32 or (len(raw) - 16) % 16:
            return None
        key, iv = _evp(_key(secret), raw[8:16])
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        padded = dec.update(raw[16:]) + dec.finalize()
        unpad = padding.PKCS7(128).unpadder()
        return (unpad.update(padded) + unpad.finalize()).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def encrypt(text: str, secret: str) -> str:
    """What the old page stored for ``text`` (CryptoJS's format); for tests acting as an old page."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    salt = secrets.token_bytes(8)
    key, iv = _evp(_key(secret), salt)
    pad = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ct = enc.update(pad.update(text.encode()) + pad.finalize()) + enc.finalize()
    return base64.b64encode(secrets.token_bytes(16)).decode() + ":" + base64.b64encode(b"Salted__" + salt + ct).decode()


def old_visitor_id(blob: object) -> str | None:
    """The old visitor id in a page's stored value, or None."""
    if not isinstance(blob, str) or not blob or len(blob) > MAX_BLOB or os.environ.get("R1V_MIGRATE_OLD_IDS") == "0":
        return None
    secret = old_secret()
    plain = decrypt(blob, secret) if secret else None
    try:
        vid = json.loads(plain) if plain else None
    except ValueError:
        return None
    if not isinstance(vid, str) or not vid.strip() or len(vid) > 100 or vid.strip().lower().startswith(RESERVED):
        return None
    return vid.strip()


def migrate(store: object, blob: object, current_user: object) -> bool:
    """The history of the id in ``blob`` given to ``current_user()`` (the visitor's store id), once.
    Never raises: a failure only leaves the history where it was. True when moved."""
    from tutor.errors import TutorError

    old = old_visitor_id(blob)
    if old is None:
        return False
    try:
        moved = bool(store.rename_user(old, current_user()))  # type: ignore[attr-defined]
    except TutorError as e:
        log.info("old browser id not migrated: %s", e)
        return False
    if moved:
        log.info("moved an old browser id's history to its visitor's cookie id")
    return moved
