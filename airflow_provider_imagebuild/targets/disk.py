"""A bootable disk made from a root filesystem tree, without mounting anything.

The local target's images are whole disks, as any cloud image is, so that they boot by themselves
in qemu, libvirt, OpenStack or Proxmox under BIOS and UEFI firmware alike:

- a GPT partition table (``sfdisk`` on the file) with a BIOS boot partition, an EFI system
  partition and the root filesystem;
- the root filesystem made by ``mkfs.ext4 -d`` straight into its place in the disk file
  (``-E offset``), and the ESP by ``mkfs.vfat --offset`` filled with ``mmd``/``mcopy``: the disk
  file stays sparse and nothing is copied twice;
- GRUB twice, both built for this disk by ``grub-mkimage`` with a two-line configuration that
  finds the root filesystem by its UUID: ``EFI/BOOT/BOOTX64.EFI`` on the ESP (the removable-media
  path every UEFI firmware tries) and ``core.img`` in the BIOS boot partition, started by GRUB's
  ``boot.img`` in the protective MBR (both patched here the way ``grub-bios-setup`` does);
- the menu itself, ``/boot/grub/grub.cfg`` on the root filesystem, boots ``/vmlinuz`` and
  ``/initrd.img``: the links Debian's kernel packages keep up to date, so a kernel upgraded inside
  a running VM is the one booted next time. The kernel's command line has ``console=ttyS0``, so a
  serial console shows the boot and a login prompt;
- ``/etc/fstab`` mounts the root filesystem by its UUID (a new one for every disk made).

The loop and nbd devices a mount would need are not there on every worker (no udev, no nbd
module), and a mount needs privileges a file never does; this module needs root only for reading
the tree.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.targets.rootfs import run_tool
from airflow_provider_imagebuild.toolchain.locate import find_tool

SECTOR = 512
MIB = 1 << 20
BIOS_BOOT_MB = 1  # GRUB's core.img (about 100 KiB here) is read from this partition by boot.img
ESP_MB = 64  # FAT32 with 512-byte clusters needs 32 MiB at least; the firmware spec asks for FAT32
BIOS_BOOT_TYPE = "21686148-6449-6E6F-744E-656564454649"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # "Linux root (x86-64)" of the discoverable partitions spec
GRUB_LIB = Path("/usr/lib/grub")
# What GRUB needs to find the root filesystem, read grub.cfg there and boot Linux, with the serial
# console; both images carry every module they use (nothing is loaded from the disk).
GRUB_MODULES = (
    "part_gpt", "ext2", "search", "search_fs_uuid", "normal", "linux", "gzio", "serial", "terminal",
    "echo", "test", "sleep", "halt", "reboot", "configfile",
)  # fmt: skip
GRUB_PLATFORM_MODULES = {"x86_64-efi": ("fat",), "i386-pc": ("biosdisk",)}
# boot.img's fields (grub/include/grub/i386/pc/boot.h) and the blocklist at the end of the first
# sector of core.img (diskboot.img), as grub-bios-setup fills them for a core.img embedded in a
# BIOS boot partition.
BOOT_KERNEL_SECTOR = 0x5C  # uint64: the disk sector of core.img's first sector
BOOT_DRIVE = 0x64  # 0xff: boot from the drive the BIOS booted
BOOT_DRIVE_CHECK = 0x66  # two NOPs: trust the drive the BIOS passed (hard disks)
BOOT_BPB = (0x03, 0x5A)
BOOT_KEEP_FROM = 0x1B8  # disk signature, the (protective) partition table and 0x55AA stay
BLOCKLIST = struct.Struct("<QHH")  # start sector, sector count, load segment
CORE_LOAD_SEGMENT = 0x820  # 0x8000 + the first sector (GRUB_BOOT_I386_PC_KERNEL_SEG + 0x20)
MARKER = "imagebuild: no kernel booted"  # printed by grub.cfg when it gets past ``boot``


@dataclass(frozen=True)
class DiskLayout:
    """What a disk holds: the root filesystem's UUID (fstab, grub.cfg, kernel command line) and
    where each partition starts, in bytes."""

    root_uuid: str
    size_bytes: int
    esp_offset: int
    root_offset: int
    root_mb: int


def kernel_command_line(root_uuid: str) -> str:
    """The kernel's arguments: root by UUID, the serial console last (it becomes /dev/console,
    where boot messages and the login prompt go), the first screen as well for a VM with a display."""
    return f"root=UUID={root_uuid} ro console=tty0 console=ttyS0,115200n8"


def grub_menu(root_uuid: str) -> str:
    return f"""# Written by airflow-provider-imagebuild when this disk was made. GRUB (on the EFI system
# partition for UEFI, in the BIOS boot partition for BIOS) finds this file on the root filesystem by
# its UUID; /vmlinuz and /initrd.img are the links the kernel packages keep on the newest kernel.
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
linux /vmlinuz {kernel_command_line(root_uuid)}
initrd /initrd.img
boot
echo "{MARKER}: /vmlinuz or /initrd.img is missing or broken"
sleep 5
halt
"""


def write_fstab(tree: Path, root_uuid: str) -> None:
    """``/`` by UUID, replacing any line for ``/``; every other line (a playbook's data volume,
    say) is kept as it is."""
    fstab = tree / "etc/fstab"
    kept = []
    if fstab.is_file() and not fstab.is_symlink():
        for line in fstab.read_text().splitlines():
            fields = line.split()
            if fields and not line.lstrip().startswith("#") and len(fields) > 1 and fields[1] == "/":
                continue
            if line.startswith("# / (root filesystem)"):
                continue
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    root = [
        "# / (root filesystem), by UUID: written when the disk was made",
        f"UUID={root_uuid} / ext4 errors=remount-ro 0 1",
    ]
    fstab.unlink(missing_ok=True)  # never written through a link planted in the tree
    fstab.write_text("\n".join([*root, *kept]) + "\n")
    fstab.chmod(0o644)


def write_boot_files(tree: Path, root_uuid: str) -> None:
    """The root filesystem's side of booting: the fstab and GRUB's menu."""
    grub = tree / "boot/grub"
    if grub.is_symlink():
        raise InvalidInput("rootfs", f"{grub} is a link; refusing to write GRUB's menu through it")
    grub.mkdir(parents=True, exist_ok=True)
    menu = grub / "grub.cfg"
    menu.unlink(missing_ok=True)
    menu.write_text(grub_menu(root_uuid))
    write_fstab(tree, root_uuid)


def _tool(name: str, package: str) -> str:
    exe = find_tool(name)
    if exe is None:
        raise InvalidInput(name, f"is not installed (apt-get install {package})")
    return exe


def grub_image(platform: str, root_uuid: str, output: Path, work: Path) -> Path:
    """A GRUB core image for ``platform`` whose built-in configuration finds the root filesystem
    by UUID and hands over to its ``/boot/grub/grub.cfg``."""
    if not (GRUB_LIB / platform).is_dir():
        package = "grub-efi-amd64-bin" if platform == "x86_64-efi" else "grub-pc-bin"
        raise InvalidInput("grub", f"GRUB's {platform} modules are not installed (apt-get install {package})")
    early = work / f"early-{platform}.cfg"
    early.write_text(f"search --no-floppy --fs-uuid --set=root {root_uuid}\nset prefix=($root)/boot/grub\n")
    modules = [*GRUB_MODULES, *GRUB_PLATFORM_MODULES[platform]]
    argv = [_tool("grub-mkimage", "grub-common"), "-O", platform, "-p", "/boot/grub", "-c", str(early)]
    run_tool([*argv, "-d", str(GRUB_LIB / platform), "-o", str(output), *modules], f"grub-mkimage ({platform})")
    return output


def install_bios_boot(disk: Path, core: Path, core_sector: int, max_sectors: int) -> None:
    """GRUB for BIOS firmware: ``boot.img`` in the MBR (keeping the protective partition table)
    pointing at ``core.img`` in the BIOS boot partition, whose first sector lists the rest."""
    image = bytearray(core.read_bytes())
    sectors = -(-len(image) // SECTOR)
    if sectors > max_sectors:
        raise InvalidInput("grub", f"core.img needs {sectors} sectors; the BIOS boot partition has {max_sectors}")
    image += bytes(sectors * SECTOR - len(image))
    BLOCKLIST.pack_into(image, SECTOR - BLOCKLIST.size, core_sector + 1, sectors - 1, CORE_LOAD_SEGMENT)
    boot = bytearray((GRUB_LIB / "i386-pc/boot.img").read_bytes())
    with open(disk, "r+b") as f:
        mbr = f.read(SECTOR)
        boot[BOOT_BPB[0] : BOOT_BPB[1]] = mbr[BOOT_BPB[0] : BOOT_BPB[1]]
        boot[BOOT_KEEP_FROM:SECTOR] = mbr[BOOT_KEEP_FROM:SECTOR]
        struct.pack_into("<Q", boot, BOOT_KERNEL_SECTOR, core_sector)
        boot[BOOT_DRIVE] = 0xFF
        boot[BOOT_DRIVE_CHECK : BOOT_DRIVE_CHECK + 2] = b"\x90\x90"
        f.seek(core_sector * SECTOR)
        f.write(image)
        f.seek(0)
        f.write(boot)


def tree_bytes(root: Path) -> int:
    out = subprocess.run(["du", "-sxb", str(root)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def make_disk(tree: Path, disk: Path) -> DiskLayout:
    """Make ``disk`` (a sparse raw file, replaced) boot ``tree``; writes the tree's fstab and
    GRUB menu first, since they name the new root filesystem's UUID."""
    root_uuid = str(uuid.uuid4())
    write_boot_files(tree, root_uuid)
    root_mb = tree_bytes(tree) * 13 // 10 // MIB + 256  # room for metadata, logs and first boot
    bios_start = 1  # MiB; partitions aligned on MiB boundaries
    esp_start = bios_start + BIOS_BOOT_MB
    root_start = esp_start + ESP_MB
    size_mb = root_start + root_mb + 1  # + the backup GPT at the end
    per_mb = MIB // SECTOR
    disk.unlink(missing_ok=True)
    run_tool(["truncate", "-s", f"{size_mb}M", str(disk)], "truncate")
    table = "\n".join(
        [
            "label: gpt",
            "unit: sectors",
            f"start={bios_start * per_mb}, size={BIOS_BOOT_MB * per_mb}, type={BIOS_BOOT_TYPE}, name=bios-boot",
            f"start={esp_start * per_mb}, size={ESP_MB * per_mb}, type={ESP_TYPE}, name=esp",
            f"start={root_start * per_mb}, size={root_mb * per_mb}, type={ROOT_TYPE}, name=root",
            "",
        ]
    )
    sfdisk = [_tool("sfdisk", "fdisk"), "--no-reread", "--no-tell-kernel", "-q", str(disk)]
    proc = subprocess.run(sfdisk, input=table, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise InvalidInput("sfdisk", (proc.stdout + proc.stderr).strip()[-500:])
    run_tool(
        [
            _tool("mkfs.ext4", "e2fsprogs"), "-q", "-F", "-L", "root", "-U", root_uuid,
            "-E", f"offset={root_start * MIB}", "-d", str(tree), str(disk), f"{root_mb}M",
        ],
        "mkfs.ext4 -d",
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="imagebuild-disk-", dir=disk.parent) as tmp:
        work = Path(tmp)
        efi = grub_image("x86_64-efi", root_uuid, work / "BOOTX64.EFI", work)
        core = grub_image("i386-pc", root_uuid, work / "core.img", work)
        run_tool(
            [_tool("mkfs.vfat", "dosfstools"), "-F", "32", "-s", "1", "-n", "ESP",
             f"--offset={esp_start * per_mb}", str(disk), str(ESP_MB * 1024)],
            "mkfs.vfat",
        )  # fmt: skip
        esp = f"{disk}@@{esp_start * MIB}"
        quiet = {"MTOOLS_SKIP_CHECK": "1"}  # the partition is no floppy: no geometry to check
        run_tool([_tool("mmd", "mtools"), "-i", esp, "::/EFI", "::/EFI/BOOT"], "mmd", quiet)
        run_tool([_tool("mcopy", "mtools"), "-i", esp, str(efi), "::/EFI/BOOT/BOOTX64.EFI"], "mcopy", quiet)
        install_bios_boot(disk, core, bios_start * per_mb, BIOS_BOOT_MB * per_mb)
    return DiskLayout(root_uuid, size_mb * MIB, esp_start * MIB, root_start * MIB, root_mb)
