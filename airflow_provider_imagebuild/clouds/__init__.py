"""Cloud access: per cloud, one client source and one translation of the SDK's errors.

The state store's backends (DynamoDB, S3) and the build targets use the same module for a
cloud, so that credentials, endpoints, retries and error classes are decided once. Each is
built on the cloud's Airflow provider hook when given a connection id (``AwsBaseHook`` for AWS),
and on the SDK's own credential chain otherwise (the CLI, a Concourse task). SDKs are imported
when a client is first made, never at DAG parse time.
"""
