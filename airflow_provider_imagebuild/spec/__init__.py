"""The pipeline spec: the YAML a DAG author writes, read and checked before anything runs.

``pipeline`` holds the root model and the loaders; one module per cloud's ``target:`` settings
(``azure``, ``gcp``, ``openstack``, ``vsphere``), one per block of the spec (``airflow_options``,
``boot``, ``cost``, ``lifecycle``, ``notify``, ``publish``), the shared field types (``fields``),
the YAML 1.2 reader (``yaml_reader``), the compiler-style report (``problems``) and the JSON
Schema (``schema``). Nothing here imports Airflow or a cloud SDK: a spec is checked on a laptop.
"""
