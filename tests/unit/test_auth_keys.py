"""Key format: prefixes, checksum, typo rejection without a database, HMAC digests."""

from __future__ import annotations

import hmac
import secrets

import pytest

from slipstream.auth import keys


def test_generated_key_has_prefix_length_and_checks_out() -> None:
    key = keys.generate_key()
    assert key.startswith("sk-slip-")
    assert len(key) == len(keys.KEY_PREFIX) + keys.BODY_LENGTH + keys.CHECKSUM_LENGTH
    assert keys.looks_valid(key)
    assert not keys.is_admin_token(key)


def test_admin_token_is_a_different_kind() -> None:
    token = keys.generate_admin_token()
    assert token.startswith("slipadm-")
    assert keys.is_admin_token(token)
    assert not keys.looks_valid(token)


def test_keys_are_unique_and_carry_enough_entropy() -> None:
    assert len({keys.generate_key() for _ in range(200)}) == 200
    # 40 base62 characters; even minus the displayed prefix and last four, over 160 bits stay secret
    import math

    hidden = keys.BODY_LENGTH - (keys.DISPLAY_PREFIX_LENGTH - len(keys.KEY_PREFIX))
    assert hidden * math.log2(62) > 160


@pytest.mark.parametrize("position", range(len(keys.KEY_PREFIX), 54))
def test_every_single_character_typo_is_rejected(position: int) -> None:
    key = keys.generate_key()
    original = key[position]
    replacement = next(c for c in keys.ALPHABET if c != original)
    typo = key[:position] + replacement + key[position + 1 :]
    assert not keys.looks_valid(typo)


def test_swapped_adjacent_characters_are_rejected() -> None:
    key = keys.generate_key()
    for i in range(len(keys.KEY_PREFIX), len(key) - 1):
        if key[i] != key[i + 1]:
            swapped = key[:i] + key[i + 1] + key[i] + key[i + 2 :]
            assert not keys.looks_valid(swapped)


@pytest.mark.parametrize(
    "bad",
    ["", "sk-slip-", "sk-proj-abc", "Bearer sk-slip-x", "sk-slip-" + "a" * 46, " " + "x" * 53],
)
def test_malformed_values_are_rejected(bad: str) -> None:
    assert not keys.looks_valid(bad)
    assert not keys.is_admin_token(bad)


def test_trailing_garbage_and_truncation_are_rejected() -> None:
    key = keys.generate_key()
    assert not keys.looks_valid(key + "x")
    assert not keys.looks_valid(key[:-1])
    assert not keys.looks_valid(key + "\n")


def test_prefix_swap_breaks_the_checksum() -> None:
    token = keys.generate_admin_token()
    as_key = keys.KEY_PREFIX + token[len(keys.ADMIN_PREFIX) :]
    assert not keys.looks_valid(as_key)


def test_digest_is_hmac_sha256_under_the_server_secret() -> None:
    key = keys.generate_key()
    server_secret = secrets.token_bytes(32)
    expected = hmac.new(server_secret, key.encode(), "sha256").hexdigest()
    assert keys.digest(key, server_secret) == expected
    assert keys.digest(key, secrets.token_bytes(32)) != expected
    assert len(expected) == 64


def test_display_parts() -> None:
    key = keys.generate_key()
    assert keys.display_prefix(key) == key[:12]
    assert keys.display_prefix(key).startswith("sk-slip-")
    assert keys.last4(key) == key[-4:]
