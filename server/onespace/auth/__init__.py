"""Who is calling and what they may touch: bearer tokens, roles, tenants and per-tenant limits.

`tokens` reads the token file (hashes only) and answers "which principal holds this token";
`tenancy` scopes collection names to the calling tenant; `limits` bounds each tenant's request
rate and RPCs in flight. The gRPC side (`onespace.rpc.auth`) wires them into every call.
"""

from onespace.auth.tenancy import DEFAULT_TENANT, current_tenant, local_name, qualify, tenant_scope
from onespace.auth.tokens import Principal, Role, TokenTable

__all__ = [
    "DEFAULT_TENANT",
    "Principal",
    "Role",
    "TokenTable",
    "current_tenant",
    "local_name",
    "qualify",
    "tenant_scope",
]
