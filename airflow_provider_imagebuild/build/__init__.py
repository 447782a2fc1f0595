"""The build domain: what a build is, its milestones, its record and the rules of its state.

Plain data and pure functions, below everything else (no Airflow, no storage, no cloud):

- :mod:`.ids`: build ids, names, keys and clouds, and the derived build id of a DAG run;
- :mod:`.values`: outputs, metadata, free text and their bounds;
- :mod:`.catalog`: the milestone catalog (codes 0..100, keys, titles, phases) and plans;
- :mod:`.identity`: :class:`BuildIdentity`, what a build is;
- :mod:`.record`: :class:`BuildRecord`, what a store keeps for one build;
- :mod:`.rules`: the state machine, as transitions on a record.
"""

from __future__ import annotations

from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.build.record import BuildRecord

__all__ = ["BuildIdentity", "BuildRecord"]
