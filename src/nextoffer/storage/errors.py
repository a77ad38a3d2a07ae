"""botocore's exceptions as domain errors: one translation for every S3 caller."""

from __future__ import annotations

from typing import Any

from nextoffer.domain.errors import (
    BackendUnavailableError,
    ConfigError,
    InputError,
    NextOfferError,
    NotFoundError,
)

ENDPOINT_SETTING = "NEXTOFFER_S3_ENDPOINT_URL"
# boto3 is optional (only s3:// needs it), so its exceptions are recognised by module and
# by name instead of by class.
_LIBRARIES = {"botocore", "boto3", "s3transfer"}
# botocore's connection failures: the store is down, not misconfigured.
_UNREACHABLE = {
    "EndpointConnectionError": "connection failed",
    "ConnectTimeoutError": "connect timed out",
    "ReadTimeoutError": "read timed out",
    "ConnectionClosedError": "connection closed",
}
_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError"}
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_NO_BUCKET = {"NoSuchBucket"}
_DENIED = {
    "AccessDenied": "access denied",
    "403": "access denied",
    "Forbidden": "access denied",
    "InvalidAccessKeyId": "the access key is not known to the store",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
}
# Throttling answers are the server's state, not a mistake in the request.
_BUSY = {"SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError"}


def is_s3_library_error(exc: BaseException) -> bool:
    """True for an exception raised by boto3, botocore or s3transfer."""
    return type(exc).__module__.split(".")[0] in _LIBRARIES


def is_unreachable(exc: BaseException) -> bool:
    """True for botocore's connection failures (refused, timed out, closed)."""
    return type(exc).__name__ in _UNREACHABLE


def error_code(exc: BaseException) -> str:
    """The `Error.Code` of a botocore ClientError (`NoSuchKey`, `404` ...), else ''."""
    response = getattr(exc, "response", None)
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    return str(error.get("Code", "")) if isinstance(error, dict) else ""


def is_not_found(exc: BaseException) -> bool:
    """True for S3's answers that a key or bucket is absent (HEAD gives a bare 404)."""
    return error_code(exc) in _NOT_FOUND | _NO_BUCKET


def translate(
    exc: BaseException, *, url: str, where: str, bucket: str, setting: str | None, endpoint_url: str
) -> NextOfferError:
    """One line naming what to fix, never a credential, for an S3 library exception.

    `url` is the store's URL, `where` the object or prefix asked for. `setting` names the
    variable the URL came from; None when the user typed the URL: then the URL leads the
    message and a bad bucket or key is an InputError instead of a ConfigError.
    """
    name = type(exc).__name__
    if name in _NO_CREDENTIALS:
        head = (
            f"{setting}: no S3 credentials for {url}" if setting else f"{where}: no S3 credentials"
        )
        return ConfigError(
            f"{head}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile or role)"
        )
    # Nothing answered: blame the URL's setting, or the endpoint for a typed URL.
    down = setting or ENDPOINT_SETTING
    if name in _UNREACHABLE:
        return BackendUnavailableError(
            down, f"{url} at {endpoint_url or 'AWS S3'}", _UNREACHABLE[name]
        )
    code = error_code(exc)
    if code in _NOT_FOUND:
        return NotFoundError(f"{where}: not found")
    if code in _NO_BUCKET:
        # A typed URL in front of the message already names the bucket.
        return _bad(
            setting, where, f"bucket {bucket!r} does not exist" if setting else "no such bucket"
        )
    if code in _DENIED:
        return _bad(setting, where, f"{_DENIED[code]}; check the AWS_* credentials")
    response: Any = getattr(exc, "response", None)
    error = response.get("Error", {}) if isinstance(response, dict) else {}
    message = str(error.get("Message", "")) or " ".join(str(exc).split())
    detail = f"{code or name}: {message}"[:300]
    status = 0
    if isinstance(response, dict):
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code and 400 <= status < 500 and code not in _BUSY:
        return _bad(setting, where, detail)
    return BackendUnavailableError(down, where, detail)


def _bad(setting: str | None, where: str, text: str) -> NextOfferError:
    if setting is None:
        return InputError(f"{where}: {text}")
    return ConfigError(f"{setting}: {where}: {text}")
