"""A spec's ``cost:`` block: what this pipeline's resources cost, for ``imagebuild report`` and the UI.

::

    cost:
      currency: EUR                     # default USD
      host_per_hour: {t3.large: 0.0832} # per build host size (the target's instance_type, vm_size...)
      default_host_per_hour: 0.09       # a size not listed above
      storage_gb_month: 0.045           # checkpoint and image storage
      transfer_gb: 0.02                 # copies between regions and accounts

Every key is optional and replaces the cloud's shipped example figure (``build/prices.py``: examples,
not quotes). Prices live in the spec rather than in a connection's extra: they belong to one
pipeline's account and region, are reviewed with it, and ``imagebuild spec check`` validates them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from airflow_provider_imagebuild.build.prices import Prices, prices_for

Price = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
HostSize = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")]


class CostSpec(BaseModel):
    """Prices per host size per hour, per GB-month stored, per GB copied (non-negative numbers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(
        default="USD", description="the prices' currency, an ISO 4217 code (USD, EUR)"
    )
    host_per_hour: dict[HostSize, Price] = Field(
        default_factory=dict,
        description="price per hour per build host size (instance_type, vm_size, machine_type, flavor)",
    )
    default_host_per_hour: Price | None = Field(
        default=None, description="price per hour of a host size host_per_hour does not list"
    )
    storage_gb_month: Price | None = Field(
        default=None, description="price per GB-month of checkpoints and images, from capture to deletion"
    )
    transfer_gb: Price | None = Field(default=None, description="price per GB copied to other regions and accounts")

    def prices(self, cloud: str) -> Prices:
        """This block over ``cloud``'s example prices."""
        return prices_for(cloud, self.model_dump())
