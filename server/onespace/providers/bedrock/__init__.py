"""Amazon Bedrock Runtime provider: Nova Multimodal Embeddings, Titan and Cohere embeddings.

One module per model family (`nova`, `titan`, `cohere`) turns inputs into request bodies and
responses into vectors; `client` owns the aioboto3 client (and the per-model fast path, signed by
`sigv4`); `errors` translates Bedrock's errors at the boundary; `retry` retries transient ones
within the caller's deadline.
"""

from __future__ import annotations

from onespace.providers.bedrock.provider import BedrockCounters, BedrockProvider
from onespace.providers.bedrock.retry import RetryPolicy

__all__ = ["BedrockCounters", "BedrockProvider", "RetryPolicy"]
