#!/usr/bin/env bash
# Builds the Packer the provider runs, and the plugins the shipped templates name, from their Go
# modules at the versions pinned below, into a cache outside the clone: /var/cache/imagebuild/packer
# (or $IMAGEBUILD_CACHE/packer), so that a second clone, or `make clean`, rebuilds nothing.
#
#   bash scripts/packer-tools.sh [LINK_DIR]   # LINK_DIR/packer -> the cached Packer (default .venv/bin)
#
# Why from modules: Debian's Packer is 1.6.6 (2020, builders built in); the Packer users run today
# (1.10 and later) ships no builders and installs plugins, which `packer init` downloads from GitHub,
# out of reach here. Every module below is fetched by exact version from the Go module proxy (it
# lists none of them; a version it does not serve answers 403). The pins are the newest versions it
# served on 2026-12-04 that build: packer-plugin-azure v2 is not served (its module path has no
# /v2), so azure is the last v1 release; googlecompute v1.2.x and ansible v1.1.4 have no .mod or
# .zip there; qemu v1.1.7 needs packer-plugin-sdk v0.6.11, which is not served, and v1.1.0..v1.1.6
# are not served whole, so qemu is v1.0.9.
#
# Layout of one pinned set (its folder name carries a hash of the pins, so clones on other pins
# keep theirs):
#   packer/set-<packer version>-<hash>/packer
#   packer/set-<...>/plugins/github.com/hashicorp/<name>/packer-plugin-<name>_v<ver>_x5.0_linux_amd64
#                                                 (+ _SHA256SUM: `packer plugins install --path` writes both)
# The provider passes the `plugins` folder beside the real Packer binary as PACKER_PLUGIN_PATH
# (airflow_provider_imagebuild/toolchain/packer.py plugin_env), so the templates' required_plugins
# are met without `packer init`. A set is complete once its .complete stamp exists: a second run
# only checks the stamp and the link (a few milliseconds).
set -euo pipefail

PACKER_MODULE=github.com/hashicorp/packer@v1.16.0
PLUGINS=(
  amazon@v1.8.2
  azure@v1.4.5
  googlecompute@v1.1.9
  openstack@v1.1.2
  vsphere@v1.4.2
  qemu@v1.0.9
  ansible@v1.1.2
)

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LINK_DIR="${1:-$ROOT/.venv/bin}"
CACHE="${IMAGEBUILD_CACHE:-/var/cache/imagebuild}/packer"
PINS="$PACKER_MODULE ${PLUGINS[*]}"
SET="$CACHE/set-${PACKER_MODULE#*@v}-$(printf '%s' "$PINS" | sha256sum | cut -c1-12)"

link() {
  mkdir -p "$LINK_DIR"
  [ "$(readlink "$LINK_DIR/packer" 2>/dev/null)" = "$SET/packer" ] || ln -sfn "$SET/packer" "$LINK_DIR/packer"
}

if [ -e "$SET/.complete" ]; then
  link
  exit 0
fi

command -v go >/dev/null || { echo "packer-tools: Go is needed to build Packer (apt-get install golang-go)" >&2; exit 1; }
mkdir -p "$CACHE"
# One build at a time per cache (two clones' `make test` at once): the second waits, then links.
exec 9>"$CACHE/.lock"
flock 9
if [ -e "$SET/.complete" ]; then
  link
  exit 0
fi
# The modules' own caches, outside the clone and away from the user's GOPATH. GOTOOLCHAIN=local
# unless set: every pinned module needs at most Go 1.26.8 (Packer 1.16.0 needs 1.26.3); an older Go
# fails naming the version it needs (then export GOTOOLCHAIN=go1.27.3, which the proxy serves).
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOPATH="$CACHE/go/path"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOWORK=off GOFLAGS="-buildvcs=false -mod=readonly" CGO_ENABLED=0
export GOPROXY="${GOPROXY:-https://proxy.golang.org}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

# build MODULE@VERSION: one binary, BIN/<module name>@<version>, built in the module's own folder of
# the module cache (its go.mod with its replace directives and its go.sum, which `go install m@v`
# refuses), stamped with its release version as the release builds are (goreleaser's ldflags): a
# plugin whose source says "dev" would else be refused by `packer plugins install`.
build() {
  local module="${1%@*}" version="${1#*@}"
  local out="$BIN/${module##*/}@$version"
  [ -x "$out" ] && return 0
  local dir
  dir="$(go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [ -n "$dir" ] || { echo "packer-tools: the Go module proxy did not serve $module@$version" >&2; return 1; }
  echo "packer-tools: building $module@$version"
  local ldflags="-s -w"
  [ "$module" = github.com/hashicorp/packer ] ||
    ldflags+=" -X $module/version.Version=${version#v} -X $module/version.VersionPrerelease="
  if ! (cd "$dir" && nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" .) 2>"$out.log"; then
    grep -v '^go: downloading' "$out.log" >&2
    echo "packer-tools: building $module@$version failed (log: $out.log)" >&2
    return 1
  fi
  mv -f "$out.tmp" "$out"
  rm -f "$out.log"
}

started=$SECONDS
build "$PACKER_MODULE"
for plugin in "${PLUGINS[@]}"; do
  build "github.com/hashicorp/packer-plugin-$plugin"
done

rm -rf "$SET.tmp"
mkdir -p "$SET.tmp/plugins"
ln -f "$BIN/packer@${PACKER_MODULE#*@}" "$SET.tmp/packer"
for plugin in "${PLUGINS[@]}"; do
  name="${plugin%@*}" version="${plugin#*@}"
  PACKER_PLUGIN_PATH="$SET.tmp/plugins" CHECKPOINT_DISABLE=1 "$SET.tmp/packer" plugins install \
    --path "$BIN/packer-plugin-$plugin" "github.com/hashicorp/$name" >/dev/null
  # The installed copy and the built binary are the same bytes: keep one on disk.
  ln -f "$SET.tmp/plugins/github.com/hashicorp/$name/packer-plugin-${name}_${version}_x"*_linux_amd64 \
    "$BIN/packer-plugin-$plugin"
done
touch "$SET.tmp/.complete"
rm -rf "$SET"
mv "$SET.tmp" "$SET"
link
# The Go caches (about 10 GB) served only this build; the binaries stay in BIN for the next pins.
go clean -modcache -cache >/dev/null 2>&1 || true
rm -rf "$CACHE/go"
echo "packer-tools: Packer ${PACKER_MODULE#*@} and ${#PLUGINS[@]} plugins in $SET ($((SECONDS - started)) s)"
