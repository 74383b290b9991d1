"""Where the deployment artefacts live, and the gateway settings they pass as ONESPACE_* variables."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path

from onespace.config import Settings, add_arguments, settings_from_args

__all__ = ["DEPLOY", "PROBE_PREFIX", "REPO", "settings_from_env"]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# Read by deploy/docker/healthcheck.py, not by the gateway.
PROBE_PREFIX = "ONESPACE_HEALTHCHECK_"


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """The Settings `onespace serve` would run with, given these variables: every ONESPACE_* name
    must be a setting (or the probe's) and every value must parse, or this raises."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    for name in env:
        if name.startswith("ONESPACE_") and not name.startswith(PROBE_PREFIX):
            key = name.removeprefix("ONESPACE_").lower()
            assert key in fields, f"{name} is not a setting of server/onespace/config.py"
            choices = fields[key].metadata.get("choices")
            assert not choices or env[name] in choices, f"{name}={env[name]!r}: not one of {choices}"
    parser = argparse.ArgumentParser()
    add_arguments(parser, env=dict(env))
    return settings_from_args(parser.parse_args([]))
