"""The local target's disk, read back with the tools an admin would use: sfdisk, blkid, debugfs,
mtools. Made from a small tree here (seconds); that such a disk boots is proven in qemu by
``test_local_boot.py`` and ``tests/operators/test_local_pipeline.py``."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.targets import disk as disk_module
from airflow_provider_imagebuild.targets.disk import (
    BIOS_BOOT_TYPE,
    ESP_TYPE,
    MARKER,
    ROOT_TYPE,
    SECTOR,
    make_disk,
    write_fstab,
)


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").write_text("tiny\n")
    (tree / "etc/fstab").write_text(
        "# /etc/fstab: static file system information.\n"
        "UUID=0000-old / ext4 defaults 0 1\n"
        "LABEL=data /srv/data ext4 defaults,nofail 0 2\n"
    )
    return tree


def _blkid(disk: Path, offset: int) -> dict[str, str]:
    out = subprocess.run(
        ["blkid", "-p", "-O", str(offset), "-o", "export", str(disk)], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_a_disk_is_gpt_with_grub_for_bios_and_uefi_and_root_by_uuid(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    disk = tmp_path / "disk.raw"
    layout = make_disk(tree, disk)

    table = json.loads(subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, text=True, check=True).stdout)
    parts = table["partitiontable"]["partitions"]
    assert table["partitiontable"]["label"] == "gpt"
    assert [p["type"] for p in parts] == [BIOS_BOOT_TYPE, ESP_TYPE, ROOT_TYPE]
    assert [p["start"] * SECTOR for p in parts[1:]] == [layout.esp_offset, layout.root_offset]
    assert disk.stat().st_size == layout.size_bytes
    assert disk.stat().st_blocks * 512 < layout.size_bytes // 2  # sparse: nothing copied in

    # The root filesystem: ext4 with the UUID fstab, GRUB's menu and the kernel's command line name.
    root = _blkid(disk, layout.root_offset)
    assert (root["TYPE"], root["UUID"], root["LABEL"]) == ("ext4", layout.root_uuid, "root")
    fstab = subprocess.run(
        ["debugfs", "-R", "cat /etc/fstab", f"{disk}?offset={layout.root_offset}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"UUID={layout.root_uuid} / ext4 errors=remount-ro 0 1" in fstab
    assert "0000-old" not in fstab and "LABEL=data /srv/data ext4 defaults,nofail 0 2" in fstab
    menu = (tree / "boot/grub/grub.cfg").read_text()
    assert f"linux /vmlinuz root=UUID={layout.root_uuid} ro" in menu and "console=ttyS0,115200n8" in menu
    assert MARKER in menu  # what the boot check watches for when no kernel boots

    # UEFI: GRUB at the removable-media path of a FAT32 ESP.
    esp = _blkid(disk, layout.esp_offset)
    assert esp["TYPE"] == "vfat" and esp.get("VERSION") == "FAT32"
    listing = subprocess.run(
        ["mdir", "-b", "-i", f"{disk}@@{layout.esp_offset}", "::/EFI/BOOT"],
        capture_output=True, text=True, check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout  # fmt: skip
    assert "::/EFI/BOOT/BOOTX64.EFI" in listing

    # BIOS: boot.img in the protective MBR pointing at core.img in the BIOS boot partition, whose
    # first sector lists the rest of it (what grub-bios-setup writes).
    raw = disk.read_bytes()[: 4096 * SECTOR]
    boot = (Path("/usr/lib/grub/i386-pc/boot.img")).read_bytes()
    assert raw[510:512] == b"\x55\xaa" and raw[0x1BE + 4] == 0xEE  # the protective MBR's GPT entry kept
    assert struct.unpack_from("<Q", raw, 0x5C)[0] == 2048 and raw[0x64] == 0xFF
    assert raw[0x66:0x68] == b"\x90\x90" and raw[0x68:0x1B8] == boot[0x68:0x1B8]
    start, count, segment = struct.unpack_from("<QHH", raw, 2048 * SECTOR + SECTOR - 12)
    assert (start, segment) == (2049, 0x820) and 100 < count < 2047
    assert raw[2048 * SECTOR + SECTOR * (count + 1) :].strip(b"\0") == b""  # nothing beyond core.img


def test_every_disk_gets_a_root_filesystem_of_its_own(tmp_path: Path) -> None:
    """Two disks of one tree (the green image, then the seal) never share a UUID: a VM with both
    attached must not mount the wrong one."""
    tree = _tree(tmp_path)
    first, second = make_disk(tree, tmp_path / "a.raw"), make_disk(tree, tmp_path / "b.raw")
    assert first.root_uuid != second.root_uuid
    assert (tree / "etc/fstab").read_text().count(" / ext4 ") == 1


def test_fstab_keeps_every_other_line_and_is_never_written_through_a_link(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    outside = tmp_path / "outside"
    outside.write_text("not the tree's\n")
    (tree / "etc/fstab").unlink()
    (tree / "etc/fstab").symlink_to(outside)
    write_fstab(tree, "1234")
    assert outside.read_text() == "not the tree's\n"
    assert (tree / "etc/fstab").read_text().splitlines()[-1] == "UUID=1234 / ext4 errors=remount-ro 0 1"


def test_a_tree_whose_grub_folder_is_a_link_is_refused(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    (tree / "boot").mkdir()
    (tree / "boot/grub").symlink_to(tmp_path)
    with pytest.raises(InvalidInput, match="boot/grub is a link"):
        make_disk(tree, tmp_path / "disk.raw")


def test_a_core_image_too_large_for_the_bios_boot_partition_is_refused(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(4 * SECTOR))
    core = tmp_path / "core.img"
    core.write_bytes(bytes(3 * SECTOR + 1))
    with pytest.raises(InvalidInput, match=r"core\.img needs 4 sectors; the BIOS boot partition has 3"):
        disk_module.install_bios_boot(disk, core, 1, 3)
    assert disk.read_bytes() == bytes(4 * SECTOR)
