"""One long-lived aioboto3 session and `bedrock-runtime` client, and the raw InvokeModel call.

The client's connection pool holds `concurrency_max` connections (the engine never has more
calls in flight). botocore's retries are off: the provider retries within the caller's
deadline (see `retry`). Every response body is read to the end, or released on error, so its
connection goes back to the pool instead of being dropped.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig

from onespace.config import Settings
from onespace.errors import FailedPrecondition
from onespace.providers.bedrock.errors import Transient, map_bedrock_errors

__all__ = ["BedrockClient", "client_config"]

USER_AGENT = "onespace"


def client_config(settings: Settings) -> AioConfig:
    return AioConfig(
        region_name=settings.bedrock_region,
        connect_timeout=settings.bedrock_connect_timeout,
        read_timeout=settings.bedrock_read_timeout,
        max_pool_connections=max(1, settings.concurrency_max),
        retries={"mode": "standard", "total_max_attempts": 1},
        user_agent_extra=USER_AGENT,
    )


class BedrockClient:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stack: AsyncExitStack | None = None
        self._client: Any = None

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
                self._client = await stack.enter_async_context(
                    session.client(
                        "bedrock-runtime",
                        region_name=s.bedrock_region,
                        endpoint_url=s.bedrock_endpoint_url or None,
                        config=client_config(s),
                    )
                )
        except Transient as failure:  # nothing retries a failed start: report the error itself
            raise failure.error from failure.__cause__
        self._stack = stack

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def invoke(self, model_id: str, body: bytes) -> tuple[bytes, str | None]:
        """The raw response body and Bedrock's request id; errors are onespace errors (or Transient)."""
        if self._client is None:
            raise FailedPrecondition("the Bedrock provider is not started (call start() first)")
        with map_bedrock_errors(model_id):
            response = await self._client.invoke_model(
                modelId=model_id, body=body, contentType="application/json", accept="application/json"
            )
            stream = response["body"]
            async with stream:  # releases the connection even if reading fails
                raw: bytes = await stream.read()
        request_id = (response.get("ResponseMetadata") or {}).get("RequestId")
        return raw, request_id
