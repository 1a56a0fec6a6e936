"""A model manifest's seal, and the site signature for sites that must know who made a model.

The seal (`manifest_sha256`) is an unkeyed SHA-256 of the manifest's canonical JSON: it catches a
corrupted or carelessly edited manifest, but whoever edits a manifest on purpose can compute it
again, so it proves nothing about who made the model. A site that needs that proof sets a site key
(`SSLANOMALY_SITE_KEY`, or a file named by `SSLANOMALY_SITE_KEY_FILE`): every model folder written
then carries `site_signature`, an HMAC-SHA256 of the manifest under that key, and with
`SSLANOMALY_REQUIRE_SIGNED=1` a model folder unsigned or signed with another key is refused.
The signature sits inside the sealed part, so a signed folder still loads where no key is set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from SSLAnomalyLib.core.files.errors import PathError

SEAL = "manifest_sha256"
SIGNATURE = "site_signature"
KEY_ENV = "SSLANOMALY_SITE_KEY"
KEY_FILE_ENV = "SSLANOMALY_SITE_KEY_FILE"
REQUIRE_ENV = "SSLANOMALY_REQUIRE_SIGNED"
MIN_KEY_BYTES = 16  # a shorter key can be guessed from any signed manifest


class SiteKeyError(PathError):
    """A site key that cannot be used, naming where it came from (the variable or the key file)."""

    prefix = "site key "


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def digest(manifest: dict, leave_out: tuple[str, ...] = (SEAL,)) -> str:
    """SHA-256 of the manifest's canonical JSON without the fields `leave_out`."""
    return hashlib.sha256(_canonical({k: v for k, v in manifest.items() if k not in leave_out})).hexdigest()


def key_id(key: bytes) -> str:
    """A short name of a key, so that a refusal can say which key signed a folder (not the key)."""
    return hashlib.sha256(b"sslanomaly site key id\0" + key).hexdigest()[:8]


def _mac(manifest: dict, key: bytes) -> str:
    return hmac.new(key, digest(manifest, (SEAL, SIGNATURE)).encode(), hashlib.sha256).hexdigest()


def site_key() -> bytes | None:
    """This site's key from the environment, or None when none is set."""
    text, file = os.environ.get(KEY_ENV), os.environ.get(KEY_FILE_ENV)
    if text and file:
        raise SiteKeyError(KEY_ENV, f"both {KEY_ENV} and {KEY_FILE_ENV} are set; set one of them")
    if file:
        try:
            key, source = Path(file).read_bytes().strip(), file
        except OSError as e:
            raise SiteKeyError(file, f"the key file ({KEY_FILE_ENV}) cannot be read ({e.strerror})") from None
    elif text:
        key, source = text.strip().encode(), KEY_ENV
    else:
        return None
    if len(key) < MIN_KEY_BYTES:
        raise SiteKeyError(source, f"is {len(key)} bytes long; a site key needs at least {MIN_KEY_BYTES} "
                                   "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
    return key


def signatures_required() -> bool:
    """Whether this site refuses model folders not signed with its key (`SSLANOMALY_REQUIRE_SIGNED=1`)."""
    return os.environ.get(REQUIRE_ENV, "").strip() not in ("", "0")


def seal(manifest: dict, key: bytes | None = None) -> dict:
    """The manifest signed with `key` when there is one, then sealed by its own digest."""
    body = {k: v for k, v in manifest.items() if k not in (SEAL, SIGNATURE)}
    if key is not None:
        body[SIGNATURE] = {"algorithm": "HMAC-SHA256", "key_id": key_id(key), "mac": _mac(body, key)}
    return dict(body, **{SEAL: digest(body)})


def seal_holds(manifest: dict) -> bool:
    """Whether the manifest's seal is its own digest (which an edit by hand breaks, and corruption)."""
    return manifest.get(SEAL) == digest(manifest)


def signature_problem(manifest: dict, key: bytes | None) -> str | None:
    """Why the manifest is not signed with this site's key, or None."""
    how = f"this site requires signed models ({REQUIRE_ENV}=1)"
    if key is None:
        return f"{how} but no site key is set ({KEY_ENV} or {KEY_FILE_ENV})"
    signature = manifest.get(SIGNATURE)
    if not isinstance(signature, dict) or not isinstance(signature.get("mac"), str):
        return f"is not signed; {how}: write it again (train or calibrate) with the site key set"
    if not hmac.compare_digest(signature["mac"], _mac(manifest, key)):
        return (f"its signature does not match this site's key: signed with another key (key id "
                f"{str(signature.get('key_id'))[:8]!r}, this site's is {key_id(key)!r}) or edited after it was signed; "
                "refusing to load it")
    return None
