"""One long-lived aioboto3 session and `bedrock-runtime` client, and the raw InvokeModel call.

The client's connection pool holds `concurrency_max` connections (the engine never has more
calls in flight). botocore's retries are off: the provider retries within the caller's
deadline (see `retry`). Every response body is read to the end, or released on error, so its
connection goes back to the pool instead of being dropped.

**The fast path.** A call through `invoke_model` costs about 0.4 ms of CPU before a byte is
sent (py-spy, 2-core VM): some twenty event emissions, endpoint-ruleset resolution, parameter
validation and serialisation, the user agent string built twice, a response parser. For one
model none of that changes from call to call except the body and the signature. So the first
call for each model id goes through `invoke_model` as usual, and a `before-send` hook records
what botocore produced for it: the URL (endpoint rules, FIPS/dual-stack, endpoint override and
the model id's percent-encoding applied), the static headers (content type, accept, user agent)
and the SigV4 scope (region, signing name) from its `Authorization` header. Later calls for that
model build the same request from that template, sign it (`sigv4.TemplateSigner`: botocore's
SigV4 algorithm with the per-template parts precomputed, checked equal to `SigV4Auth` by the
tests) with the session's own (refreshing) credentials, and send it through the client's aiohttp session
(same pool, timeouts and proxies); errors are parsed the way botocore's rest-json parser does
and raised as the same `ClientError`, so `map_bedrock_errors` cannot tell the paths apart.
Nothing is learned for a model whose first call was not SigV4-signed (e.g. a bearer-token API
key); `--bedrock-fast-path false` sends every call through `invoke_model`. What the fast path
skips: botocore's per-call event hooks, so instrumentation that patches them (X-Ray, ddtrace)
sees only the first call per model.
"""

from __future__ import annotations

import contextvars
import random
import uuid
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
import orjson
from aiobotocore.config import AioConfig
from botocore.awsrequest import AWSPreparedRequest
from botocore.exceptions import ClientError, NoCredentialsError

from onespace.config import Settings
from onespace.errors import FailedPrecondition
from onespace.providers.bedrock.errors import Transient, map_bedrock_errors
from onespace.providers.bedrock.sigv4 import TemplateSigner

__all__ = ["BedrockClient", "Route", "client_config", "error_response"]

USER_AGENT = "onespace"
_EVENT = "before-send.bedrock-runtime.InvokeModel"
# Headers whose value is per call (signature, date, body length, retry bookkeeping, a trace id
# taken from the environment at call time): never part of a learned template.
_PER_CALL = frozenset(
    {
        "authorization",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "content-length",
        "amz-sdk-invocation-id",
        "amz-sdk-request",
        "x-amzn-trace-id",
        "host",
        "expect",
        "transfer-encoding",
    }
)
_learning: contextvars.ContextVar[str | None] = contextvars.ContextVar("bedrock_learning", default=None)
_ids = random.Random()  # invocation ids need to be unique, not secret: no getrandom() per call


def client_config(settings: Settings) -> AioConfig:
    return AioConfig(
        region_name=settings.bedrock_region,
        connect_timeout=settings.bedrock_connect_timeout,
        read_timeout=settings.bedrock_read_timeout,
        max_pool_connections=max(1, settings.concurrency_max),
        retries={"mode": "standard", "total_max_attempts": 1},
        user_agent_extra=USER_AGENT,
    )


@dataclass(frozen=True, slots=True)
class Route:
    """What botocore sent for one model's InvokeModel, minus what changes per call."""

    url: str
    headers: tuple[tuple[str, str], ...]
    region: str
    signing_name: str
    signer: TemplateSigner

    @classmethod
    def learn(cls, url: str, headers: Mapping[str, Any]) -> Route | None:
        """The template of a prepared request, or None unless it was SigV4-signed with a signed
        payload (anything else is left to botocore on every call)."""
        names = {k.lower() for k in headers}
        if "x-amz-content-sha256" in names or "date" in names:
            return None
        auth = _text(headers.get("Authorization") or headers.get("authorization") or b"")
        scheme, _, rest = auth.partition(" ")
        if scheme != "AWS4-HMAC-SHA256":
            return None
        fields = [p.strip() for p in rest.split(",")]
        credential = next((f[len("Credential=") :] for f in fields if f.startswith("Credential=")), "")
        scope = credential.split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            return None
        static = tuple((k, _text(v)) for k, v in headers.items() if k.lower() not in _PER_CALL)
        region, service = scope[2], scope[3]
        return cls(url, static, region, service, TemplateSigner(url, dict(static), region, service))


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def error_response(status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The `ClientError.response` botocore's rest-json parser builds for an error answer."""
    try:
        parsed = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    message = parsed.get("message", parsed.get("Message", ""))
    code: Any = headers.get("x-amzn-errortype")
    if code is None:
        code = parsed.get("code", parsed.get("Code", parsed.get("__type", str(status))))
    if isinstance(code, str):
        code = code.split(":", 1)[0].rsplit("#", 1)[-1]
    request_id = headers.get("x-amzn-requestid")
    return {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {
            "RequestId": request_id,
            "HTTPStatusCode": status,
            "HTTPHeaders": dict(headers),
            "RetryAttempts": 0,
        },
    }


class BedrockClient:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._credentials: Any = None
        self._session: Any = None
        self._http: Any = None
        self._routes: dict[str, Route] = {}
        self.fast_calls = 0  # calls sent through a learned route (for tests and the benchmark)

    @property
    def started(self) -> bool:
        return self._client is not None

    async def start(self) -> None:
        if self._client is not None:
            return
        s = self._settings
        stack = AsyncExitStack()
        try:
            with map_bedrock_errors(None):
                session = aioboto3.Session(profile_name=s.bedrock_profile or None)
                self._session = session
                self._client = await stack.enter_async_context(
                    session.client(
                        "bedrock-runtime",
                        region_name=s.bedrock_region,
                        endpoint_url=s.bedrock_endpoint_url or None,
                        config=client_config(s),
                    )
                )
                if s.bedrock_fast_path:
                    # the same object the client signs with (the session caches it)
                    self._credentials = await session.get_credentials()
                    self._http = getattr(getattr(self._client, "_endpoint", None), "http_session", None)
                    if self._http is not None:
                        self._client.meta.events.register(_EVENT, self._learn)
        except Transient as failure:  # nothing retries a failed start: report the error itself
            raise failure.error from failure.__cause__
        self._stack = stack

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        self._routes.clear()
        self._http = self._credentials = None
        if stack is not None:
            await stack.aclose()

    async def credentials_problem(self) -> str | None:
        """Why no request could be signed now (None: credentials resolve). No network call
        beyond what the credential chain itself makes (and caches)."""
        if self._session is None:
            return "the Bedrock client is not started"
        try:
            credentials = await self._session.get_credentials()
        except Exception as exc:  # a broken profile, an unreachable credential endpoint
            return f"AWS credentials cannot be resolved: {type(exc).__name__}"
        if credentials is None:
            return "no AWS credentials found (environment, shared files, profile or instance role)"
        return None

    def _learn(self, request: Any, **_: Any) -> None:
        model_id = _learning.get()
        if model_id is not None and model_id not in self._routes:
            route = Route.learn(request.url, request.headers)
            if route is not None:
                self._routes[model_id] = route

    async def invoke(self, model_id: str, body: bytes) -> tuple[bytes, str | None]:
        """The raw response body and Bedrock's request id; errors are onespace errors (or Transient)."""
        if self._client is None:
            raise FailedPrecondition("the Bedrock provider is not started (call start() first)")
        route = self._routes.get(model_id)
        with map_bedrock_errors(model_id):
            if route is not None:
                return await self._send(route, body)
            token = _learning.set(model_id)
            try:
                response = await self._client.invoke_model(
                    modelId=model_id, body=body, contentType="application/json", accept="application/json"
                )
            finally:
                _learning.reset(token)
            stream = response["body"]
            async with stream:  # releases the connection even if reading fails
                raw: bytes = await stream.read()
        request_id = (response.get("ResponseMetadata") or {}).get("RequestId")
        return raw, request_id

    async def _send(self, route: Route, body: bytes) -> tuple[bytes, str | None]:
        """One call from a learned template (see the module docstring)."""
        if self._credentials is None:
            raise NoCredentialsError()
        credentials = await self._credentials.get_frozen_credentials()
        headers = route.signer.sign(body, credentials)
        headers["amz-sdk-invocation-id"] = str(uuid.UUID(int=_ids.getrandbits(128), version=4))
        headers["amz-sdk-request"] = "attempt=1"
        self.fast_calls += 1
        response = await self._http.send(AWSPreparedRequest("POST", route.url, headers, body, False))
        raw: bytes = await response.content  # already read in full by send()
        answer: dict[str, str] = response.headers
        if response.status_code >= 300:
            raise ClientError(error_response(response.status_code, answer, raw), "InvokeModel")
        return raw, answer.get("x-amzn-requestid")
