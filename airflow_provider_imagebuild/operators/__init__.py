"""Milestone operators: one Airflow task per milestone, resuming from the build state store.

The toolchain operators (Packer, Ansible, seal, publish) are imported lazily by name so that a
DAG using only ``command`` milestones does not import them at parse time.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_imagebuild.operators.base import MilestoneOperator
from airflow_provider_imagebuild.operators.command import CommandMilestoneOperator

_LAZY = {
    "AnsibleMilestoneOperator": "airflow_provider_imagebuild.operators.ansible",
    "ApprovalMilestoneOperator": "airflow_provider_imagebuild.operators.approval",
    "BootstrapMilestoneOperator": "airflow_provider_imagebuild.operators.bootstrap",
    "LaunchTestMilestoneOperator": "airflow_provider_imagebuild.operators.launch",
    "PackerMilestoneOperator": "airflow_provider_imagebuild.operators.packer",
    "PublishMilestoneOperator": "airflow_provider_imagebuild.operators.image",
    "RegisterBuildOperator": "airflow_provider_imagebuild.operators.register",
    "SealMilestoneOperator": "airflow_provider_imagebuild.operators.image",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = ["CommandMilestoneOperator", "MilestoneOperator", *_LAZY]
