"""Human units: 1.23 GFLOP, 4.5 MiB, 12.3 ms. Pure string formatting."""

from __future__ import annotations


def si(value: float, unit: str = "") -> str:
    """Decimal prefixes (K, M, G, T, P), three significant digits: ``si(4.09e9) == "4.09G"``."""
    magnitude = abs(value)
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if magnitude >= factor:
            return f"{value / factor:.3g}{prefix}{unit}"
    return f"{value:.3g}{unit}" if value != int(value) else f"{int(value)}{unit}"


def binary_bytes(value: float) -> str:
    """Binary prefixes for bytes: ``binary_bytes(3 * 2**20) == "3.00 MiB"``."""
    magnitude = abs(value)
    for factor, prefix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if magnitude >= factor:
            return f"{value / factor:.2f} {prefix}"
    return f"{int(value)} B"


def milliseconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def shape(dims: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in dims) if dims else "scalar"


#: Byte units a size may be written in (``6GiB``, ``512 MB``): binary and decimal prefixes.
BYTE_UNITS: dict[str, int] = {
    "B": 1,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
}


def parse_bytes(text: str) -> int:
    """``"6GiB"`` -> 6442450944, ``"1.5 GB"`` -> 1500000000, ``"4096"`` -> 4096 (plain bytes). A
    ValueError names the value and the unit it does not know."""
    stripped = text.strip()
    number = stripped.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ").strip()
    unit = stripped[len(number) :].strip() if number else stripped
    if unit and unit not in BYTE_UNITS:
        raise ValueError(f"unknown byte unit {unit!r} in {text!r}; known: {', '.join(BYTE_UNITS)}")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a size such as 6GiB or 512MB") from None
    return round(value * BYTE_UNITS.get(unit, 1))
