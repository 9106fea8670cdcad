"""Optional API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Keys are compared with ``hmac.compare_digest`` against every configured key (no early
exit), so the answer time does not reveal how much of a key matched.
"""

from __future__ import annotations

import hmac


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    """The key a request carries, from raw ASGI headers (lower-cased names)."""
    api_key = headers.get(b"x-api-key")
    if api_key:
        return api_key.strip()
    authorization = headers.get(b"authorization", b"")
    scheme, _, credentials = authorization.partition(b" ")
    if scheme.lower() == b"bearer" and credentials.strip():
        return credentials.strip()
    return None


def is_authorized(keys: list[bytes], presented: bytes | None) -> bool:
    if not keys:
        return True
    if presented is None:
        return False
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(key, presented)
    return matched
