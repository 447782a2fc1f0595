"""Which Azure cloud a Resource Manager endpoint belongs to, and what follows from it: the audience
its tokens are requested for, the Microsoft Entra authority that issues them, and the cloud Packer's
azure-arm builder is told to build in.

The public cloud's token scope (``https://management.azure.com/.default``) is refused by the
sovereign clouds' Resource Managers, which take tokens for their own audience from their own
authority (azure-identity's ``AzureAuthorityHosts``; the audiences are the endpoints themselves).
Azure Stack Hub, or any other Resource Manager, has an audience of its own (its
``/metadata/endpoints`` lists it): the connection gives it as ``resource_manager_audience``. Packer's
azure-arm (1.6.6, and plugin 1.x) knows only the named clouds (``cloud_environment_name``: Public,
China, USGovernment; Germany is closed), so it cannot build for another one.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from airflow_provider_imagebuild.clouds.endpoint import is_loopback
from airflow_provider_imagebuild.errors import InvalidInput

PUBLIC_CLOUD = "https://management.azure.com"


@dataclass(frozen=True)
class AzureCloud:
    endpoint: str
    audience: str
    authority: str  # the Entra host that issues its tokens ("" where only the worker's settings know it)
    packer_environment: str  # azure-arm's cloud_environment_name ("" where azure-arm has none)

    @property
    def scope(self) -> str:
        return f"{self.audience.rstrip('/')}/.default"


KNOWN_CLOUDS = {
    cloud.endpoint: cloud
    for cloud in (
        AzureCloud(PUBLIC_CLOUD, PUBLIC_CLOUD, "login.microsoftonline.com", "Public"),
        AzureCloud(
            "https://management.chinacloudapi.cn",
            "https://management.chinacloudapi.cn",
            "login.chinacloudapi.cn",
            "China",
        ),
        AzureCloud(
            "https://management.usgovcloudapi.net",
            "https://management.usgovcloudapi.net",
            "login.microsoftonline.us",
            "USGovernment",
        ),
    )
}


def cloud_of(endpoint: str, audience: str = "") -> AzureCloud:
    """The cloud of ``endpoint`` (``resource_manager_endpoint``), with ``audience`` when the
    connection gives one. A loopback endpoint (an emulator, the tests' fake) is taken as the public
    cloud's stand-in; any other unknown one needs its audience."""
    parts = urlsplit(endpoint.rstrip("/"))
    known = KNOWN_CLOUDS.get(f"{parts.scheme}://{(parts.hostname or '').lower()}")
    if known is not None:
        return AzureCloud(known.endpoint, audience or known.audience, known.authority, known.packer_environment)
    if is_loopback(endpoint):
        return AzureCloud(endpoint, audience or PUBLIC_CLOUD, "", "Public")
    if not audience:
        raise InvalidInput(
            "connection.extra.resource_manager_audience",
            f"{endpoint} is not the public, China or US Government cloud's Resource Manager: give the audience "
            "its tokens are for (an Azure Stack Hub lists it in its /metadata/endpoints)",
        )
    return AzureCloud(endpoint, audience, "", "")
