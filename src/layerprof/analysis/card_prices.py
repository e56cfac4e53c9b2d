"""Hourly prices for ``compare_devices``: a user's mapping of device -> USD per hour, checked against
the devices being compared, and the ``name=price,...`` text and price files the CLI reads."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec, lookup_key, positive_finite
from layerprof.hardware.table import get_device

__all__ = ["hourly_prices", "parse_price_list", "read_price_file"]


def hourly_prices(given: Mapping[str, object] | None, devices: Sequence[DeviceSpec]) -> dict[str, float]:
    """``given`` (device name or alias -> USD per hour) keyed by the canonical names of ``devices``.

    A name that is no device raises :class:`UnknownDeviceError` with the closest names; a device that
    is not among ``devices``, a name given twice, or a price that is not a positive finite number
    raises :class:`InvalidArgumentError` naming it."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise InvalidArgumentError(
            f"price_per_hour must be a mapping of device -> USD per hour, got {given!r:.80}"
        )
    labels = {lookup_key(label): spec.name for spec in devices for label in (spec.name, *spec.aliases)}
    prices: dict[str, float] = {}
    for name, price in given.items():
        if not isinstance(name, str):
            raise InvalidArgumentError(f"price_per_hour: device names must be strings, got {name!r}")
        canonical = labels.get(lookup_key(name))
        if canonical is None:
            known = get_device(name, extra=devices)  # an unknown name: UnknownDeviceError, closest names
            raise InvalidArgumentError(
                f"price_per_hour names {name!r} ({known.name}), which is not among the devices compared: "
                f"{', '.join(spec.name for spec in devices)}"
            )
        if not positive_finite(price):
            raise InvalidArgumentError(
                f"price_per_hour[{name!r}] must be a positive finite number of USD per hour, got {price!r}"
            )
        if canonical in prices:
            raise InvalidArgumentError(f"price_per_hour gives {canonical!r} twice (as {name!r} too)")
        prices[canonical] = float(price)  # type: ignore[arg-type]
    return prices


def parse_price_list(text: str) -> dict[str, float]:
    """``"t4=0.35,a100-40gb=1.10"`` -> ``{"t4": 0.35, "a100-40gb": 1.1}``; a part without ``=`` or a
    price that is no number raises :class:`InvalidArgumentError` naming it (names are checked later)."""
    prices: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise InvalidArgumentError(f"--price-per-hour part {part!r} must be DEVICE=USD, e.g. t4=0.35")
        try:
            price = float(value.strip().removeprefix("$"))
        except ValueError:
            raise InvalidArgumentError(
                f"--price-per-hour {name.strip()}={value.strip()!r}: the price is not a number (USD per hour)"
            ) from None
        prices[name.strip()] = price
    if not prices:
        raise InvalidArgumentError(f"--price-per-hour {text!r} names no device; use DEVICE=USD,DEVICE=USD")
    return prices


def read_price_file(path: str | Path) -> dict[str, object]:
    """A prices file: JSON or TOML (by its suffix), a table of device -> USD per hour, either at the
    top or under a ``price_per_hour_usd`` key. Values are checked by :func:`hourly_prices`."""
    where = Path(path)
    if where.suffix.lower() == ".toml":
        from layerprof.core.toml import read_toml

        document: object = read_toml(where)
    else:
        try:
            document = json.loads(where.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InvalidArgumentError(f"prices file {str(where)!r} is not valid JSON: {error}") from None
    if isinstance(document, Mapping) and isinstance(document.get("price_per_hour_usd"), Mapping):
        document = document["price_per_hour_usd"]
    if not isinstance(document, Mapping):
        raise InvalidArgumentError(
            f"prices file {str(where)!r} must be a table of device = USD per hour, "
            f"got {type(document).__name__}"
        )
    return {str(k): v for k, v in document.items()}
