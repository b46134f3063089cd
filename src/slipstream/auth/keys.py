"""The format of model access keys and admin tokens: checkable offline, stored only as an HMAC.

A secret is ``<prefix><40 random base62 chars><6 base62 chars of CRC32>``:

- the prefix (``sk-slip-`` for model access keys, ``slipadm-`` for admin tokens) says at a glance,
  and in secret scanners, which kind of credential leaked;
- 40 characters from ``secrets`` carry 238 bits, so even with the displayed prefix and last four
  characters public, well over 160 bits stay unknown;
- the CRC32 covers prefix and body, so a typo (or a key pasted into the wrong plane with its prefix
  edited) is rejected without a database lookup.

The database only ever sees ``digest()``: HMAC-SHA256 under the server secret.
"""

from __future__ import annotations

import hmac
import re
import secrets
import zlib

KEY_PREFIX = "sk-slip-"
ADMIN_PREFIX = "slipadm-"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 40
CHECKSUM_LENGTH = 6
DISPLAY_PREFIX_LENGTH = 12

_BASE = len(ALPHABET)
_TAIL = BODY_LENGTH + CHECKSUM_LENGTH
_KEY_RE = re.compile(rf"{re.escape(KEY_PREFIX)}[0-9A-Za-z]{{{_TAIL}}}")
_ADMIN_RE = re.compile(rf"{re.escape(ADMIN_PREFIX)}[0-9A-Za-z]{{{_TAIL}}}")


def _checksum(text: str) -> str:
    """CRC32 of ``text`` as exactly six base62 characters (62**6 > 2**32)."""
    value = zlib.crc32(text.encode("ascii"))
    out = []
    for _ in range(CHECKSUM_LENGTH):
        value, rem = divmod(value, _BASE)
        out.append(ALPHABET[rem])
    return "".join(reversed(out))


def _generate(prefix: str) -> str:
    head = prefix + "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return head + _checksum(head)


def _well_formed(pattern: re.Pattern[str], secret: str) -> bool:
    if not pattern.fullmatch(secret):
        return False
    head = secret[:-CHECKSUM_LENGTH]
    return hmac.compare_digest(_checksum(head), secret[-CHECKSUM_LENGTH:])


def generate_key() -> str:
    """A new model access key (``sk-slip-…``), to be shown to its owner once."""
    return _generate(KEY_PREFIX)


def generate_admin_token() -> str:
    """A new admin token (``slipadm-…``) for the control API."""
    return _generate(ADMIN_PREFIX)


def looks_valid(secret: str) -> bool:
    """True when ``secret`` has the model access key format and a correct checksum."""
    return _well_formed(_KEY_RE, secret)


def is_admin_token(secret: str) -> bool:
    """True when ``secret`` is a well-formed admin token (format and checksum)."""
    return _well_formed(_ADMIN_RE, secret)


def digest(secret: str, server_secret: bytes) -> str:
    """HMAC-SHA256 of the secret under the server secret, as hex: the only form that is stored."""
    return hmac.digest(server_secret, secret.encode("utf-8"), "sha256").hex()


def display_prefix(secret: str) -> str:
    """The first characters, kept in the clear so people can tell their keys apart."""
    return secret[:DISPLAY_PREFIX_LENGTH]


def last4(secret: str) -> str:
    return secret[-4:]
