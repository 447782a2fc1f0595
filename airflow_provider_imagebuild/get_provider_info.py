"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_imagebuild import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-imagebuild",
        "name": "Image Build",
        "description": "Resumable golden VM image builds (Packer + Ansible) with a durable milestone store.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Image Build",
                "external-doc-url": "https://github.com/airflow-provider-imagebuild/airflow-provider-imagebuild",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Image Build",
                "python-modules": ["airflow_provider_imagebuild.hooks.build_state"],
            }
        ],
        "operators": [
            {
                "integration-name": "Image Build",
                "python-modules": [
                    "airflow_provider_imagebuild.operators.base",
                    "airflow_provider_imagebuild.operators.command",
                ],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_imagebuild.hooks.build_state.BuildStateHook",
                "hook-name": "Image Build State Store",
                "connection-type": "imagebuild_state",
                "conn-fields": {
                    "store_url": {
                        "label": "Store URL",
                        "schema": {"type": ["string", "null"]},
                        "description": "sqlite:////abs/state.db, file:///abs/dir, dynamodb://TABLE?region=R, "
                        "s3://BUCKET/PREFIX?region=R or sqlite+s3:////abs/state.db?bucket=B",
                    },
                    "aws_conn_id": {
                        "label": "AWS connection id",
                        "schema": {"type": ["string", "null"], "default": "aws_default"},
                        "description": "Credentials for the dynamodb, s3 and sqlite+s3 stores",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "password", "port"],
                    "relabeling": {"host": "Store URL (or set it in the extra field)"},
                    "placeholders": {
                        "host": "dynamodb://imagebuild-state?region=eu-west-1",
                        "extra": '{"store_url": "dynamodb://imagebuild-state?region=eu-west-1", '
                        '"aws_conn_id": "aws_default"}',
                    },
                },
            }
        ],
    }
