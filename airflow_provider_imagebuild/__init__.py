"""Resumable golden VM image builds for Apache Airflow.

A build walks through numbered milestones (see :mod:`.milestone`); every milestone is recorded
in a durable state store (:mod:`.store`) so that clearing a failed task resumes the build at the
milestone that failed instead of starting over.
"""

from __future__ import annotations

__version__ = "0.1.0"
