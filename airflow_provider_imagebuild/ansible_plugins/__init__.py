"""Ansible plugins shipped with the provider (``callback/imagebuild.py``: record milestones from
an existing Ansible job)."""
