"""Run a server interceptor's own code around a handler's behaviour, whatever its kind.

grpc.aio interceptors see only the method name and metadata; to know the caller's context, set
a context variable for the call, or see how it ended, they must replace the handler's behaviour.
`around(handler, scope)` does that once for the four handler kinds: `scope(context)` is an async
context manager entered before the behaviour runs and left after its last response (or error).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

__all__ = ["Scope", "ScopeInterceptor", "around", "ended_with"]

Ctx = grpc.aio.ServicerContext[Any, Any]
Scope = Callable[[Ctx], contextlib.AbstractAsyncContextManager[None]]


def around(handler: Any, scope: Scope) -> grpc.RpcMethodHandler[Any, Any]:
    def unary_response(inner: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def behaviour(request: Any, context: Ctx) -> Any:
            async with scope(context):
                return await inner(request, context)

        return behaviour

    def stream_response(inner: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
        async def behaviour(request: Any, context: Ctx) -> AsyncIterator[Any]:
            async with scope(context):
                result = inner(request, context)
                if inspect.isasyncgen(result):
                    async for response in result:
                        yield response
                else:  # a handler that writes through context.write
                    await result

        return behaviour

    wrapped: grpc.RpcMethodHandler[Any, Any]
    if handler.unary_unary is not None:
        wrapped = handler._replace(unary_unary=unary_response(handler.unary_unary))
    elif handler.stream_unary is not None:
        wrapped = handler._replace(stream_unary=unary_response(handler.stream_unary))
    elif handler.unary_stream is not None:
        wrapped = handler._replace(unary_stream=stream_response(handler.unary_stream))
    else:
        wrapped = handler._replace(stream_stream=stream_response(handler.stream_stream))
    return wrapped


class ScopeInterceptor(grpc.aio.ServerInterceptor):
    """An interceptor whose whole work is a scope around each handler's behaviour: subclasses say
    which (`scope_for`; None leaves the handler as it is)."""

    def scope_for(self, details: grpc.HandlerCallDetails) -> Scope | None:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:
            return None
        scope = self.scope_for(details)
        return handler if scope is None else around(handler, scope)


def ended_with(context: Ctx, error: BaseException | None) -> grpc.StatusCode:
    """The status a behaviour ended with, seen from a scope around it: OK, the code it aborted
    with, or CANCELLED when anything else ended it (the caller left, the server is stopping)."""
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, grpc.aio.AbortError):
        return context.code() or grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.CANCELLED
