"""The interceptor that gives every RPC its trace span (installed only with `--tracing` on).

Outermost of the interceptors, so an RPC refused by authentication or a tenant limit is traced
too, and every stage recorded while the handler runs (queue wait, provider call, index search)
becomes a child of the RPC's span.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from onespace.rpc.intercept import Scope, ScopeInterceptor, ended_with
from onespace.tracing import Tracer

__all__ = ["TracingInterceptor"]

Ctx = grpc.aio.ServicerContext[Any, Any]


class TracingInterceptor(ScopeInterceptor):
    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def scope_for(self, details: grpc.HandlerCallDetails) -> Scope:
        tracer, method, metadata = self._tracer, details.method, details.invocation_metadata or ()

        @contextlib.asynccontextmanager
        async def traced(context: Ctx) -> AsyncIterator[None]:
            rpc = tracer.rpc(method, metadata)
            code, message = grpc.StatusCode.OK, ""
            try:
                yield
            except BaseException as exc:
                code = ended_with(context, exc)
                if isinstance(exc, grpc.aio.AbortError):
                    message = context.details() or ""
                raise
            finally:
                rpc.end(code, message)

        return traced
