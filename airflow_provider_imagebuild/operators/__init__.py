"""Milestone operators: one Airflow task per milestone, resuming from the build state store."""

from airflow_provider_imagebuild.operators.command import CommandMilestoneOperator
from airflow_provider_imagebuild.operators.milestone import MilestoneOperator

__all__ = ["CommandMilestoneOperator", "MilestoneOperator"]
