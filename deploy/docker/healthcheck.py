"""Container health probe: one gRPC health Check against the local gateway; exit 0 only when SERVING.

Docker's HEALTHCHECK and Kubernetes exec probes run this. Kubernetes' built-in `grpc:` probe
speaks plaintext only, so a gateway with TLS on its port needs this probe instead: it dials with
TLS when `ONESPACE_TLS_CERT` is set, trusting `--ca` (else the system roots) and checking the
certificate for `--server-name` (the certificate names a service, not 127.0.0.1). Health checks
need no token. Exit 1 for every kind of failure: Docker reserves 2.

Options default from the environment, so the image's HEALTHCHECK needs no arguments:
ONESPACE_PORT, ONESPACE_TLS_CERT, ONESPACE_HEALTHCHECK_{SERVICE,CA,SERVER_NAME,CERT,KEY}.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="onespace-healthcheck", description=__doc__.splitlines()[0])
    p.add_argument(
        "--target",
        default=f"127.0.0.1:{env.get('ONESPACE_PORT', '50051')}",
        help="host:port of the gateway (default: 127.0.0.1:$ONESPACE_PORT)",
    )
    p.add_argument(
        "--service",
        default=env.get("ONESPACE_HEALTHCHECK_SERVICE", ""),
        help='health service name; "" (default) is the whole gateway, onespace.v1.InfoService '
        "only says the process answers",
    )
    p.add_argument("--timeout", type=float, default=3.0, help="seconds for the whole check")
    p.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=bool(env.get("ONESPACE_TLS_CERT")),
        help="dial with TLS (default: on when ONESPACE_TLS_CERT is set)",
    )
    p.add_argument("--ca", default=env.get("ONESPACE_HEALTHCHECK_CA", ""), help="PEM CA bundle to trust")
    p.add_argument(
        "--server-name",
        default=env.get("ONESPACE_HEALTHCHECK_SERVER_NAME", ""),
        help="name to verify the server certificate against (default: the target's host)",
    )
    p.add_argument(
        "--cert", default=env.get("ONESPACE_HEALTHCHECK_CERT", ""), help="client certificate (mutual TLS)"
    )
    p.add_argument("--key", default=env.get("ONESPACE_HEALTHCHECK_KEY", ""), help="key of --cert")
    return p


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if not args.tls:
        return grpc.insecure_channel(args.target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(args.ca), private_key=_read(args.key), certificate_chain=_read(args.cert)
    )
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.target, credentials, options=options)


def check(args: argparse.Namespace) -> tuple[bool, str]:
    """(serving, what to print)."""
    try:
        with _channel(args) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    except grpc.RpcError as exc:
        return False, f"{exc.code().name}: {exc.details()}"
    except OSError as exc:  # an unreadable --ca/--cert/--key
        return False, str(exc)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == SERVING, status


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = build_parser(os.environ if env is None else env).parse_args(argv)
    serving, what = check(args)
    service = args.service or "server"
    print(f"{args.target} {service}: {what}", file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
