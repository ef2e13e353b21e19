"""AWS through boto3: the session and clients, paging, waiting, retries, and the one botocore error map.

Everything below the provider's public methods lets botocore's exceptions
(``ClientError``, ``BotoCoreError``) travel up untouched, or raises
:class:`Refused` for a problem it found itself. The provider runs each
public method under :func:`botocore_errors` (the :func:`aws_errors`
decorator), which turns all of them into exceptions of dockerparallel
through one table, :data:`ERROR_TABLE`, naming the provider class and the
public method. Retries (throttling, time-outs, server errors) happen in
:meth:`AwsApi.call` before that, with backoff; a call that gives up is
marked with what it was and how often it was tried, for the message.

boto3 is optional (``pip install 'dockerparallel[aws]'``): this module
imports without it, and :data:`BOTO3_MISSING` says why it is missing.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import random
import re
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar, cast

from ..._errors import DockerParallelError, ProviderError, ProviderThrottled
from ._options import ApiOptions

try:  # the optional extra "aws"
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
except ImportError as _exc:  # pragma: no cover - only without the extra
    boto3 = None
    BOTO3_MISSING: ImportError | None = _exc
    BotoCoreError = ClientError = type("_NoBotocore", (Exception,), {})  # type: ignore[assignment,misc]
else:
    BOTO3_MISSING = None

logger = logging.getLogger("dockerparallel.providers.ecs")

F = TypeVar("F", bound=Callable[..., Any])

CREDENTIALS_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run 'aws configure' "
    "(see docs/fargate.md)"
)
MAX_DELAY = 20.0

#: What an AWS error code (of a ``ClientError``) or a botocore exception class
#: name becomes: its kind. Throttling and transient kinds are retried with
#: backoff first; every code or class not named here is a plain ``error``.
ERROR_TABLE: Mapping[str, str] = {
    **dict.fromkeys(("Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
                     "TooManyRequestsException", "RequestThrottled", "RequestThrottledException", "SlowDown"),
                    "throttle"),
    **dict.fromkeys(("ServerException", "InternalError", "InternalFailure", "ServiceUnavailable",
                     "RequestTimeout", "RequestTimeoutException", "ReadTimeoutError", "ConnectTimeoutError",
                     "EndpointConnectionError", "ConnectionClosedError"), "transient"),
    **dict.fromkeys(("UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken",
                     "ExpiredTokenException", "AuthFailure", "InvalidSignatureException", "SignatureDoesNotMatch",
                     "MissingAuthenticationToken", "PartialCredentialsError"), "credentials"),
    "NoCredentialsError": "no_credentials",
    "NoRegionError": "no_region",
    "ProfileNotFound": "no_profile",
    "ParamValidationError": "invalid_request",
}

#: Kind -> (the exception raised, its message). The message may use
#: ``{code}``, ``{message}`` (AWS's own words, scrubbed), ``{call}`` and ``{attempts}``.
KINDS: Mapping[str, tuple[type[DockerParallelError], str]] = {
    "throttle": (ProviderThrottled, "AWS throttled {call} {attempts} time(s) in a row ({code}); try again later"),
    "transient": (ProviderError, "{call} failed {attempts} time(s): {code}: {message}"),
    "credentials": (ProviderError, "AWS credentials missing or refused ({code}): " + CREDENTIALS_HELP),
    "no_credentials": (ProviderError, "no AWS credentials found: " + CREDENTIALS_HELP),
    "no_region": (ProviderError, "no AWS region: pass region=, set AWS_DEFAULT_REGION or set one in your AWS profile"),
    "no_profile": (ProviderError, "the AWS profile does not exist ({message})"),
    "invalid_request": (ProviderError, "{call}: the request is invalid ({code}; parameters {message})"),
    "error": (ProviderError, "{code}: {message} ({call})"),
}

_CALL_NOTE = "_dockerparallel_call"
_IN_MAP: contextvars.ContextVar[bool] = contextvars.ContextVar("dockerparallel_botocore_map", default=False)
#: AWS validation messages quote the refused value: "Value 'xyz' at 'overrides...' failed to satisfy ...".
_QUOTED_VALUE = re.compile(r"Value '.*?' at '", re.S)


class Refused(Exception):
    """A problem the provider found itself (no default VPC, overrides too long, ...).

    :func:`botocore_errors` turns it into a :class:`~dockerparallel.ProviderError`
    naming the provider class and the public method being executed.
    """



# -- reading errors -------------------------------------------------------------------------------------------------


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ``ClientError``, the class name of a botocore exception, else ``""``."""
    if BOTO3_MISSING is None and isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    if BOTO3_MISSING is None and isinstance(exc, BotoCoreError):
        return next((c.__name__ for c in type(exc).__mro__ if c.__name__ in ERROR_TABLE), type(exc).__name__)
    return ""


def error_kind(exc: BaseException) -> str | None:
    """The kind of a botocore exception (a key of :data:`KINDS`); ``None`` for any other exception."""
    if BOTO3_MISSING is not None or not isinstance(exc, (ClientError, BotoCoreError)):
        return None
    kind = ERROR_TABLE.get(error_code(exc))
    if kind is None and isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        kind = "transient" if status >= 500 else None
    return kind or "error"


def already_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says the resource does not exist (any AWS service's wording)."""
    code = error_code(exc) if isinstance(exc, ClientError) else ""
    return "NotFound" in code or code in ("NoSuchEntity", "ResourceNotFoundException") or (
        bool(code) and "does not exist" in str(exc))


def note_call(exc: BaseException, service: str, operation: str, attempts: int) -> None:
    """Mark ``exc`` with the call that raised it and how often it was tried (read by the map)."""
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _CALL_NOTE, (f"{service}.{operation}", attempts))


def _aws_message(exc: BaseException, kind: str, hide: Iterable[str]) -> str:
    """AWS's (or botocore's) own words about ``exc``, with every value that may be secret taken out."""
    if kind == "invalid_request":  # botocore quotes the refused parameter values: keep only their names
        return ", ".join(sorted(set(re.findall(r'parameter (?:in input: )?"?([\w.\[\]]+)', str(exc))))) or "?"
    text = str(exc.response.get("Error", {}).get("Message", "")) if isinstance(exc, ClientError) else str(exc)
    text = _QUOTED_VALUE.sub("Value '***' at '", text)
    for secret in hide:
        if len(secret) >= 8:  # shorter ones are no real credentials, and would mangle words
            text = text.replace(secret, "***")
    return text


def translate(provider: object, method: str, exc: BaseException, hide: Iterable[str] = ()) -> DockerParallelError:
    """The exception of dockerparallel that a botocore exception becomes (see :data:`ERROR_TABLE`).

    Parameters
    ----------
    provider : object
        The provider whose public method was running.
    method : str
        That method's name.
    exc : BaseException
        A ``ClientError`` or ``BotoCoreError``, or :class:`Refused`.
    hide : iterable of str
        Values that must not show in the message (the credentials in use).
    """
    if isinstance(exc, Refused):
        return ProviderError(provider, method, str(exc))
    kind = error_kind(exc) or "error"
    error, template = KINDS[kind]
    operation = getattr(exc, "operation_name", None) or "an AWS call"
    call, attempts = getattr(exc, _CALL_NOTE, (operation, 1))
    text = template.format(code=error_code(exc) or type(exc).__name__, message=_aws_message(exc, kind, hide),
                           call=call, attempts=attempts)
    if error is ProviderThrottled:
        return ProviderThrottled(f"{type(provider).__name__}.{method}: {text}")
    return ProviderError(provider, method, text)


@contextlib.contextmanager
def botocore_errors(provider: object, method: str, hide: Callable[[], Iterable[str]] = tuple) -> Iterator[None]:
    """Run the body as ``provider.method``: botocore exceptions and :class:`Refused` leave it translated.

    Exceptions of dockerparallel and any other exception pass unchanged.
    Nested uses (a public method calling another) translate once, in the
    outermost, so the message names the method the caller called.

    Raises
    ------
    ProviderThrottled
        When AWS throttled a call for every try.
    ProviderError
        For any other botocore exception, or :class:`Refused`.
    """
    if _IN_MAP.get():
        yield
        return
    token = _IN_MAP.set(True)
    try:
        yield
    except (ClientError, BotoCoreError, Refused) as exc:
        raise translate(provider, method, exc, hide()) from exc
    finally:
        _IN_MAP.reset(token)


def aws_errors(method: F) -> F:
    """Run a public method of a provider with an ``_api`` (:class:`AwsApi`) under :func:`botocore_errors`."""

    @functools.wraps(method)
    def mapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        with botocore_errors(self, method.__name__, self._api.credential_values):
            return method(self, *args, **kwargs)

    return cast(F, mapped)


# -- the API --------------------------------------------------------------------------------------------------------


class AwsApi:
    """One boto3 session, its clients, and every AWS call of a provider, retried with backoff.

    Thread-safe: a boto3 session is not, so it is only used under a lock;
    the clients made from it are, and are shared.
    """

    def __init__(self, options: ApiOptions) -> None:
        self.options = options
        self.lock = threading.RLock()  # the boto3 session and the clients made from it
        self.clients: dict[str, Any] = {}
        self.session: Any = None

    def client(self, service: str) -> Any:
        """The client of ``service``, created once, with botocore's own retries off (:meth:`call` retries)."""
        with self.lock:
            if service not in self.clients:
                self.clients[service] = self._make_client(service)
            return self.clients[service]

    def boto_session(self) -> Any:
        """The boto3 session, created on first use (``ProfileNotFound`` for an unknown profile)."""
        with self.lock:
            if self.session is None:
                self.session = self.options.session or boto3.Session(
                    region_name=self.options.region, profile_name=self.options.profile)
            return self.session

    def region(self) -> str:
        """The region: the option, else the session's (``NoRegionError`` when there is none)."""
        if self.options.region:
            return self.options.region
        with self.lock:
            region = self.boto_session().region_name
        if not region:
            raise NoRegionError()
        return str(region)

    def known_region(self) -> str | None:
        """The region when it is known already (the option or the session's); never creates a session."""
        return self.options.region or (self.session.region_name if self.session is not None else None)

    def partition(self) -> str:
        """The region's partition (``aws``, ``aws-cn``, ...); ``aws`` for an unknown region."""
        try:
            with self.lock:
                return str(self.boto_session().get_partition_for_region(self.region()))
        except Exception:  # an unknown region: the commercial partition
            return "aws"

    def credential_values(self) -> tuple[str, ...]:
        """The credentials in use, once clients exist (never looked up here): to take out of messages."""
        try:
            with self.lock:
                if not self.clients or self.session is None:
                    return ()
                credentials = self.session.get_credentials()
            frozen = credentials.get_frozen_credentials()
        except Exception:  # none, or a refresh that failed: nothing to hide that a message could hold
            return ()
        return tuple(v for v in (frozen.secret_key, frozen.token, frozen.access_key) if v)

    def _make_client(self, service: str) -> Any:
        session, region = self.boto_session(), self.region()
        if session.get_credentials() is None:
            raise NoCredentialsError()
        config = Config(region_name=region, retries={"mode": "standard", "total_max_attempts": 1},
                        connect_timeout=10, read_timeout=60, user_agent_extra="dockerparallel")
        endpoint = self.options.endpoint_url
        logger.debug("creating the %s client (region %s%s)", service, region,
                     f", endpoint {endpoint}" if endpoint else "")
        return session.client(service, region_name=region, endpoint_url=endpoint, config=config)

    def call(self, service: str, operation: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """Call ``operation`` of ``service``, retrying throttling and time-outs with backoff.

        A call that gives up raises botocore's exception, marked with the call
        and the number of tries (see :func:`note_call`).
        """
        attempts = self.options.max_attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return getattr(self.client(service), operation)(**kwargs)
            except Exception as exc:
                if not self.retry(service, operation, exc, attempt, attempts):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def retry(self, service: str, operation: str, exc: BaseException, attempt: int, attempts: int) -> bool:
        """After a failed try: sleep and return ``True`` when worth another; else mark ``exc`` and return ``False``."""
        kind = error_kind(exc)
        if kind not in ("throttle", "transient") or attempt >= attempts:
            note_call(exc, service, operation, attempt)
            return False
        delay = min(self.options.retry_delay * 2 ** (attempt - 1), MAX_DELAY) * random.uniform(0.5, 1.0)
        logger.debug("%s.%s failed (%s); try %d of %d in %.2f s", service, operation, error_code(exc),
                     attempt + 1, attempts, delay)
        time.sleep(delay)
        return True

    def pages(self, service: str, operation: str, key: str, token: str = "nextToken", **kwargs: Any) -> list[Any]:
        """The items under ``key`` of every page of a listing whose pages are chained by ``token``."""
        items: list[Any] = []
        while True:
            response = self.call(service, operation, **kwargs)
            items += response.get(key) or []
            if not response.get(token):
                return items
            kwargs[token] = response[token]

    def wait_while(self, codes: frozenset[str], action: Callable[[], Any], what: str) -> None:
        """Run ``action``; while it fails with one of ``codes`` (resource still in use), wait and retry."""
        deadline = time.monotonic() + self.options.cleanup_timeout
        delay = max(self.options.retry_delay, 0.01)
        while True:
            try:
                action()
                return
            except ClientError as exc:
                if error_code(exc) not in codes or time.monotonic() + delay > deadline:
                    raise
                logger.debug("%s is still in use (%s); trying again in %.1f s", what, error_code(exc), delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
