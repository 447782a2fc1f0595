#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo call, only when they are missing.
# Runs as root on the project's machines (CI, developers); prints what it does.
set -euo pipefail

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)  # Ansible's connection to real build hosts
# The toolchain: debootstrap and the image tools for build hosts and the local target. Packer is
# not Debian's 1.6.6 (it cannot read the templates' required_plugins): `make packer-tools` builds
# the pinned release and its plugins from their Go modules (scripts/packer-tools.sh).
[ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v chromium >/dev/null 2>&1 || need+=(chromium)  # the browser tests of the Airflow UI plugin (driven by Playwright)
[ -x /usr/sbin/mkfs.ext4 ] || [ -x /sbin/mkfs.ext4 ] || need+=(e2fsprogs)
# The local target's bootable disk (a GPT disk file built without mounting: sfdisk, mkfs.vfat and
# mtools for the ESP, GRUB's EFI and BIOS images) and its boot checks (qemu with TCG, OVMF for UEFI).
command -v sfdisk >/dev/null 2>&1 || [ -x /usr/sbin/sfdisk ] || [ -x /sbin/sfdisk ] || need+=(fdisk)
[ -x /usr/sbin/mkfs.vfat ] || [ -x /sbin/mkfs.vfat ] || need+=(dosfstools)
command -v mcopy >/dev/null 2>&1 || need+=(mtools)
[ -d /usr/lib/grub/x86_64-efi ] || need+=(grub-efi-amd64-bin)
[ -d /usr/lib/grub/i386-pc ] || need+=(grub-pc-bin)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
# The CeleryExecutor deployment run for real (tests/servers/scaleout.py): Airflow's metadata DB
# and the Celery broker. Neither is started as a service; the harness runs its own on loopback.
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The vCenter simulator of the vSphere tests (tests/servers/vcsim/main.go), built by `make setup`
# from the govmomi simulator library Debian ships; Go also builds Packer (`make packer-tools`).
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/vmware/govmomi/simulator ] || need+=(golang-github-vmware-govmomi-dev)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
