"""Azurite (npm), Azure Blob Storage on loopback: how the tests and the benchmarks start it."""

from __future__ import annotations

from tests.servers.process import ROOT

# Azurite's published development account (https://learn.microsoft.com/azure/storage/common/storage-use-azurite).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def argv(port: int) -> list[str]:
    """In memory, telemetry off (it would try to reach the internet), any API version."""
    azurite = ROOT / "node_modules/.bin/azurite-blob"
    assert azurite.exists(), "azurite missing: run `make setup` (npm ci)"
    return [str(azurite), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
            "--skipApiVersionCheck", "--disableTelemetry", "--silent", "--loose"]  # fmt: skip


def connection_string(url: str) -> str:
    """``AZURE_STORAGE_CONNECTION_STRING`` for the Azurite at ``url``, as a user would set it."""
    return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={url}/{ACCOUNT};"
