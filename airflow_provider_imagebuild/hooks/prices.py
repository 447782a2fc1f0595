"""Each pipeline's prices as the deployment's specs give them, for the report and the UI.

A build's record names its pipeline and cloud; its prices are its pipeline's spec's ``cost:`` block
over the cloud's example figures, or the examples alone when the spec has none or is not found
(a build of a pipeline since removed). The answer says which (``Prices.source``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from airflow_provider_imagebuild.build.prices import Prices, example_prices
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.spec.pipeline import load_specs, spec_files

log = logging.getLogger(__name__)

PricesOf = Callable[[BuildRecord], Prices]


def pipeline_prices(folder: Path | None) -> dict[str, Prices]:
    """Pipeline -> its prices, for every loadable spec in ``folder`` with a ``cost:`` block."""
    if folder is None or not folder.is_dir():
        return {}
    loaded, errors = load_specs(spec_files(folder))
    for exc in errors:
        log.warning("Image builds: spec not read for its prices: %s", exc)
    return {spec.pipeline: spec.cost.prices(spec.cloud) for _, spec in loaded if spec.cost is not None}


def prices_of(folder: Path | None) -> PricesOf:
    """A build -> its prices: its pipeline's spec's, else its cloud's examples."""
    known = pipeline_prices(folder)
    return lambda rec: known.get(rec.pipeline) or example_prices(rec.cloud)


_known: dict[tuple[object, ...], dict[str, Prices]] = {}
_lock = threading.Lock()


def deployment_prices() -> PricesOf:
    """:func:`prices_of` over the deployment's specs folder (what the Image builds pages and API
    read), loaded again only when a spec file changes."""
    from airflow_provider_imagebuild.hooks.deployment_stores import specs_folder

    folder = specs_folder()
    files = tuple((p.name, p.stat().st_mtime_ns) for p in spec_files(folder)) if folder.is_dir() else ()
    key = (str(folder), files)
    with _lock:
        if key not in _known:
            _known.clear()
            _known[key] = pipeline_prices(folder)
        known = _known[key]
    return lambda rec: known.get(rec.pipeline) or example_prices(rec.cloud)
