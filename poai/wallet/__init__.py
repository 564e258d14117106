"""Keys, EIP-55 addresses and Ethereum V3 keystores."""

from poai.wallet.keys import (
    new_private_key,
    parse_address,
    parse_private_key,
    private_key_to_address,
    to_checksum_address,
)
from poai.wallet.keystore import KeyStore, decrypt_key, encrypt_key

__all__ = [
    "KeyStore",
    "decrypt_key",
    "encrypt_key",
    "new_private_key",
    "parse_address",
    "parse_private_key",
    "private_key_to_address",
    "to_checksum_address",
]
