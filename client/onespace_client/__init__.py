"""onespace_client: typed async and sync clients for the onespace gateway, and its CLI commands.

    from onespace_client import AsyncClient, content, item, where

    async with AsyncClient("127.0.0.1:50051") as client:
        await client.create_collection("photos")
        await client.upsert("photos", [item("cat", content.from_path("cat.jpg"))])
        hits = await client.search("photos", text="a sleeping cat", k=5)
        recent = [where("year").range(gte=2020), where("lang").in_(["en", "fr"])]
        hits = await client.search("photos", text="a cat", conditions=recent)
        vec = vector((await client.embed(["a cat"])).results[0].embeddings[0])  # a numpy array

Idempotent calls are retried by gRPC on UNAVAILABLE and RESOURCE_EXHAUSTED, at the pace the
server's pushback asks (`retries=False` or a `RetryPolicy` to change that); `wait_for_ready=True`
makes calls wait for an unreachable server within their deadline.

Vectors travel as packed float32 bytes; `vector(message)` reads any Embedding, SearchHit or
StoredItem back as an array (numpy when installed).

The client depends only on grpc, protobuf and the stdlib (tqdm for the CLI's progress bar).
"""

from __future__ import annotations

from onespace_client import content, enums, filters, retry, vectors
from onespace_client.async_client import DEFAULT_TARGET, MAX_MESSAGE_BYTES, AsyncClient
from onespace_client.build import collection_config, embed_options, item
from onespace_client.errors import OnespaceClientError
from onespace_client.filters import where
from onespace_client.retry import RetryPolicy
from onespace_client.sync_client import Client
from onespace_client.vectors import vector

__all__ = [
    "DEFAULT_TARGET",
    "MAX_MESSAGE_BYTES",
    "AsyncClient",
    "Client",
    "OnespaceClientError",
    "RetryPolicy",
    "collection_config",
    "content",
    "embed_options",
    "enums",
    "filters",
    "item",
    "retry",
    "vector",
    "vectors",
    "where",
]
