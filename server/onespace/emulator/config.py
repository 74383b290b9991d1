"""The emulator's knobs: latency, quotas, concurrency and fault rates.

Frozen: a runtime change (`POST /_emulator/config`) builds a new config with `updated`, which
validates every key so a typo is a 400, not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onespace.models import Modality

__all__ = ["OVERFLOW_POLICIES", "EmulatorConfig", "FaultRates", "Latency"]

OVERFLOW_POLICIES = ("throttle", "queue")


@dataclass(frozen=True, slots=True)
class Latency:
    """A call takes `fixed_ms` plus a uniform draw in [0, `jitter_ms`]."""

    fixed_ms: float = 0.0
    jitter_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probability per admitted call of each injected error (at most 1 in total)."""

    throttle: float = 0.0  # ThrottlingException 429
    not_ready: float = 0.0  # ModelNotReadyException 429
    unavailable: float = 0.0  # ServiceUnavailableException 503
    internal: float = 0.0  # InternalServerException 500
    timeout: float = 0.0  # ModelTimeoutException 408, after the call's latency

    CODES = {
        "throttle": "ThrottlingException",
        "not_ready": "ModelNotReadyException",
        "unavailable": "ServiceUnavailableException",
        "internal": "InternalServerException",
        "timeout": "ModelTimeoutException",
    }


def _zero_latency() -> dict[str, Latency]:
    return {m.value: Latency() for m in Modality}


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """`rpm` 0 = unlimited; `burst` 0 = a full minute's worth; `max_concurrency` 0 = unlimited.
    Beyond `max_concurrency`, `overflow` 'throttle' answers ThrottlingException, 'queue' waits."""

    latency: Mapping[str, Latency] = field(default_factory=_zero_latency)
    per_item_ms: float = 0.0
    rpm: int = 0
    burst: int = 0
    rpm_by_model: Mapping[str, int] = field(default_factory=dict)
    max_concurrency: int = 0
    overflow: str = "throttle"
    faults: FaultRates = field(default_factory=FaultRates)
    seed: int | None = None
    s3_dir: Path | None = None

    def __post_init__(self) -> None:
        rates = [getattr(self.faults, name) for name in FaultRates.CODES]
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError(
                f"faults: each rate must be in [0, 1] and they must sum to at most 1 (got {rates})"
            )
        if self.overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow: {self.overflow!r} is not one of {OVERFLOW_POLICIES}")
        numbers = {
            "per_item_ms": self.per_item_ms,
            "rpm": self.rpm,
            "burst": self.burst,
            "max_concurrency": self.max_concurrency,
            **self.rpm_by_model,
        }
        for name, value in numbers.items():
            if value < 0:
                raise ValueError(f"{name}: must not be negative (got {value})")
        for key, lat in self.latency.items():
            if key not in {m.value for m in Modality} or lat.fixed_ms < 0 or lat.jitter_ms < 0:
                raise ValueError(f"latency.{key}: unknown modality or negative value")

    def rpm_for(self, model: str) -> int:
        return self.rpm_by_model.get(model, self.rpm)

    def to_json(self) -> dict[str, Any]:
        return {
            "latency": {k: dataclasses.asdict(v) for k, v in self.latency.items()},
            "per_item_ms": self.per_item_ms,
            "rpm": self.rpm,
            "burst": self.burst,
            "rpm_by_model": dict(self.rpm_by_model),
            "max_concurrency": self.max_concurrency,
            "overflow": self.overflow,
            "faults": dataclasses.asdict(self.faults),
            "seed": self.seed,
            "s3_dir": str(self.s3_dir) if self.s3_dir else None,
        }

    def updated(self, patch: Mapping[str, Any]) -> EmulatorConfig:
        """A copy with `patch` applied (the admin API's JSON); ValueError names a bad key."""
        changes: dict[str, Any] = {}
        latency = dict(self.latency)
        for key, value in patch.items():
            if key in ("latency_ms", "jitter_ms"):
                attr = "fixed_ms" if key == "latency_ms" else "jitter_ms"
                latency = {
                    m: dataclasses.replace(lat, **{attr: _number(key, value)}) for m, lat in latency.items()
                }
            elif key == "latency":
                for modality, spec in _mapping(key, value).items():
                    if modality not in latency:
                        raise ValueError(f"latency.{modality}: not a modality ({', '.join(latency)})")
                    latency[modality] = _replace(latency[modality], spec, f"latency.{modality}")
            elif key == "faults":
                changes["faults"] = _replace(self.faults, _mapping(key, value), "faults")
            elif key == "rpm_by_model":
                changes[key] = {
                    str(k): int(_number(f"{key}.{k}", v)) for k, v in _mapping(key, value).items()
                }
            elif key in ("rpm", "burst", "max_concurrency"):
                changes[key] = int(_number(key, value))
            elif key == "per_item_ms":
                changes[key] = _number(key, value)
            elif key == "overflow":
                changes[key] = str(value)
            elif key == "seed":
                changes[key] = None if value is None else int(_number(key, value))
            else:
                raise ValueError(f"{key}: unknown setting")
        return dataclasses.replace(self, latency=latency, **changes)


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _mapping(key: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected an object, got {value!r}")
    return value


def _replace(obj: Any, spec: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(obj)}
    for name in spec:
        if name not in names:
            raise ValueError(f"{where}.{name}: unknown setting (known: {', '.join(sorted(names))})")
    return dataclasses.replace(obj, **{k: _number(f"{where}.{k}", v) for k, v in spec.items()})
