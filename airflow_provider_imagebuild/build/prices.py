"""Prices a build is costed with: per host size per hour, per GB-month of stored checkpoints and
images, per GB copied between regions.

The figures shipped here are EXAMPLES, not quotes: rounded on-demand list prices of one public
region per cloud (AWS us-east-1, Azure East US, GCP us-central1) as their price pages showed them
in 2024, in US dollars, for the default build host sizes of the specs. They make a report readable
out of the box; a pipeline that wants its own figures (a discount, another region, a private cloud's
internal rate) writes a ``cost:`` block in its spec, which replaces these key by key. Private
clouds (OpenStack, vSphere) and the local target ship no host price: their cost is what the
operator says it is, and an unpriced resource costs nothing in a report (it says ``example`` or
``spec`` for where each pipeline's prices came from, so nobody mistakes a zero for a measurement).

Plain data, no Airflow: the report, the UI, the CLI and the leak collector (``price_of``) share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HOURS_PER_MONTH = 730.0  # how the clouds turn a monthly storage price into an hourly one
EXAMPLE = "example"  # where prices came from: the shipped examples below
SPEC = "spec"  # ... or the pipeline's own ``cost:`` block


@dataclass(frozen=True)
class Prices:
    """What one pipeline's resources cost. ``None`` where no price is known: such usage is left
    out of a total rather than priced at a guess."""

    currency: str = "USD"
    host_per_hour: Mapping[str, float] = field(default_factory=dict)  # host size -> price per hour
    default_host_per_hour: float | None = None  # a size not listed in host_per_hour
    storage_gb_month: float | None = None  # checkpoint and image storage (snapshots, disks, files)
    transfer_gb: float | None = None  # copies between regions and accounts
    source: str = EXAMPLE

    def host_hourly(self, size: str | None) -> float | None:
        """The price of one hour of a build host of ``size`` (the default price for an unknown size)."""
        if size and size in self.host_per_hour:
            return float(self.host_per_hour[size])
        return self.default_host_per_hour

    def merged(self, block: Mapping[str, Any]) -> Prices:
        """These prices with a spec's ``cost:`` block laid over them, key by key (its host sizes
        added to the listed ones)."""
        return Prices(
            currency=str(block.get("currency") or self.currency),
            host_per_hour={**self.host_per_hour, **dict(block.get("host_per_hour") or {})},
            default_host_per_hour=_or(block.get("default_host_per_hour"), self.default_host_per_hour),
            storage_gb_month=_or(block.get("storage_gb_month"), self.storage_gb_month),
            transfer_gb=_or(block.get("transfer_gb"), self.transfer_gb),
            source=SPEC,
        )


def _or(value: object, fallback: float | None) -> float | None:
    return fallback if value is None else float(value)  # type: ignore[arg-type]  # a spec's number


# Example figures (see the module docstring): on-demand Linux list prices, USD, 2024.
EXAMPLE_PRICES: dict[str, Prices] = {
    "aws": Prices(  # us-east-1; EBS snapshot standard tier; inter-region transfer out
        host_per_hour={"t3.micro": 0.0104, "t3.small": 0.0208, "t3.medium": 0.0416, "m5.large": 0.096},
        default_host_per_hour=0.096,
        storage_gb_month=0.05,
        transfer_gb=0.02,
    ),
    "azure": Prices(  # East US; standard snapshot LRS; inter-region transfer
        host_per_hour={"Standard_B2s": 0.0416, "Standard_D2s_v5": 0.096, "Standard_D4s_v5": 0.192},
        default_host_per_hour=0.096,
        storage_gb_month=0.05,
        transfer_gb=0.02,
    ),
    "gcp": Prices(  # us-central1; image storage; inter-region transfer
        host_per_hour={"e2-small": 0.0168, "e2-medium": 0.0335, "e2-standard-2": 0.067, "n2-standard-2": 0.0971},
        default_host_per_hour=0.067,
        storage_gb_month=0.05,
        transfer_gb=0.02,
    ),
    "openstack": Prices(),  # a private cloud: its rates are the operator's (a spec's cost: block)
    "vsphere": Prices(),
    "local": Prices(host_per_hour={}, default_host_per_hour=0.0, storage_gb_month=0.0, transfer_gb=0.0),
}


def example_prices(cloud: str) -> Prices:
    """The shipped example prices of ``cloud`` (no prices for a cloud this module does not know)."""
    return EXAMPLE_PRICES.get(cloud, Prices())


def prices_for(cloud: str, block: Mapping[str, Any] | None) -> Prices:
    """A pipeline's prices: its spec's ``cost:`` block over its cloud's examples."""
    base = example_prices(cloud)
    return base.merged(block) if block else base


# Kinds of resource the leak collector finds, by what they are priced as.
HOST_KINDS = frozenset({"instance", "vm", "server", "host"})
STORAGE_KINDS = frozenset({"volume", "snapshot", "image", "disk", "checkpoint", "template", "library_item"})


def price_of(resource: Mapping[str, Any], prices: Prices | None = None) -> float | None:
    """What ``resource`` costs per hour, for an estimate (``imagebuild gc`` multiplies it by the
    resource's age), or None when no price is known.

    ``resource``: ``cloud`` (for the example prices when ``prices`` is not given), ``kind``
    (``instance``, ``server``, ``vm`` are hosts; ``volume``, ``snapshot``, ``image``, ``disk``... are
    storage), ``size`` (a host's size) and ``gb`` (storage's size). A NIC, an unknown kind or a
    storage resource of unknown size: None."""
    chosen = prices or example_prices(str(resource.get("cloud") or ""))
    kind = str(resource.get("kind") or "").lower()
    if kind in HOST_KINDS:
        size = resource.get("size")
        return chosen.host_hourly(str(size) if size else None)
    gb = resource.get("gb")
    if kind in STORAGE_KINDS and chosen.storage_gb_month is not None and isinstance(gb, (int, float)):
        return float(gb) * chosen.storage_gb_month / HOURS_PER_MONTH
    return None


def leak_price(cloud: str, resource: Any) -> float | None:
    """:func:`price_of` in the shape ``imagebuild gc``'s price hook takes (``targets.leaks.PriceOf``:
    cloud and a leaked ``Resource`` with ``kind``, ``size`` and ``gb``), at the cloud's example prices."""
    kind, size, gb = getattr(resource, "kind", ""), getattr(resource, "size", ""), getattr(resource, "gb", None)
    return price_of({"cloud": cloud, "kind": kind, "size": size, "gb": gb})
