"""An OVF template from a qcow2 image: what a vSphere content library takes.

``qemu-img convert -O vmdk -o subformat=streamOptimized`` makes the disk (the VMDK variant OVF
packages carry), and the descriptor is written from the OVF 1.0 envelope schema (DSP0243) with
the CIM resource types vSphere reads: a virtual system with CPUs (type 3), memory (4), a
paravirtual SCSI controller (6), the disk (17) on it and a VMXNET3 adapter (10) on one network.
The manifest (``.mf``) holds each file's SHA-256, as ``ovftool`` writes it.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from airflow_provider_imagebuild.targets.base import file_hash
from airflow_provider_imagebuild.targets.rootfs import run_tool

DISK_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"


@dataclass(frozen=True)
class OvfPackage:
    descriptor: Path
    disk: Path
    manifest: Path

    @property
    def files(self) -> list[Path]:
        return [self.descriptor, self.disk, self.manifest]


def virtual_size(image: Path) -> int:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", str(image)], capture_output=True, text=True, check=True
    ).stdout
    return int(json.loads(out)["virtual-size"])


def descriptor(name: str, disk: Path, capacity: int, cpus: int, memory_mb: int, network: str) -> str:
    n, net = escape(name), escape(network)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>
    <File ovf:href={quoteattr(disk.name)} ovf:id="file1" ovf:size="{disk.stat().st_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1"
        ovf:format="{DISK_FORMAT}"/>
  </DiskSection>
  <NetworkSection>
    <Info>The logical networks</Info>
    <Network ovf:name={quoteattr(network)}><Description>{net}</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id={quoteattr(name)}>
    <Info>A golden image built by airflow-provider-imagebuild</Info>
    <Name>{n}</Name>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian12_64Guest">
      <Info>The guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{n}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-15</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>{cpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>{memory_mb} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{memory_mb}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>{net}</rasd:Connection>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def ovf_package(image: Path, folder: Path, name: str, cpus: int, memory_mb: int, network: str) -> OvfPackage:
    """Convert ``image`` into ``folder/<name>.vmdk`` and write the descriptor and manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    disk = folder / f"{name}.vmdk"
    partial = folder / f".{name}.vmdk.partial"
    run_tool(
        ["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(image), str(partial)],
        "qemu-img convert to VMDK",
    )
    partial.replace(disk)
    ovf = folder / f"{name}.ovf"
    ovf.write_text(descriptor(name, disk, virtual_size(image), cpus, memory_mb, network))
    manifest = folder / f"{name}.mf"
    manifest.write_text("".join(f"SHA256({p.name})= {file_hash(p)}\n" for p in (ovf, disk)))
    return OvfPackage(ovf, disk, manifest)
