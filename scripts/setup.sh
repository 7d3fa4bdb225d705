#!/usr/bin/env bash
# Prepares a machine to build, test and demo gitfleet: npm dependencies, the
# Temporal CLI, a running Docker engine with the local busybox image, and the
# compiled project in dist/. Every step checks its result first, so a rerun on
# a prepared machine only prints one "up to date" line per step.
#
# Usage: scripts/setup.sh [--compose]
#   --compose  also stage the build contexts that docker-compose.yml uses in
#              .tools/compose (host binaries, their shared libraries and the
#              built app), because no base image can be pulled here.
#
# Environment:
#   TEMPORAL_CLI  path of an existing temporal binary to use instead of
#                 looking on PATH or building one into .tools/bin
#   BUSYBOX_BIN   static busybox to copy into the image (default /bin/busybox)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TOOLS_DIR="$ROOT/.tools"
TEMPORAL_VERSION="1.5.1"
TEMPORAL_MODULE="github.com/temporalio/cli/cmd/temporal@v${TEMPORAL_VERSION}"
TEMPORAL_LDFLAGS="-X github.com/temporalio/cli/temporalcli.Version=${TEMPORAL_VERSION}"
BUSYBOX_IMAGE="gitfleet/busybox:local"
BUSYBOX_DIR="$ROOT/images/busybox"
BUSYBOX_BIN="${BUSYBOX_BIN:-/bin/busybox}"
IMAGE_HASH_LABEL="dev.gitfleet.build-inputs-sha256"
DOCKER_WAIT_SECONDS=60

step() { printf 'setup: %s\n' "$*"; }
fail() {
  printf 'setup: error: %s\n' "$*" >&2
  exit 1
}

# Prints the last lines of a log file to stderr, for failures of steps whose
# output goes to a log.
show_log_tail() {
  local log="$1"
  if [[ -f "$log" ]]; then
    printf -- '--- last lines of %s ---\n' "$log" >&2
    tail -n 30 "$log" >&2
  fi
}

mkdir -p "$TOOLS_DIR/bin"

# --- npm dependencies --------------------------------------------------------

# npm rewrites node_modules/.package-lock.json on every install, so its mtime
# records when node_modules was last installed.
install_node_modules() {
  command -v npm >/dev/null 2>&1 || fail "npm not found: install Node.js 20 and rerun"
  local marker="node_modules/.package-lock.json"

  if [[ ! -f package-lock.json ]]; then
    if [[ -f "$marker" && ! package.json -nt "$marker" ]]; then
      step "npm: node_modules up to date"
      return
    fi
    step "npm: npm install (no package-lock.json yet)"
    npm install --no-audit --no-fund
    return
  fi

  if [[ -f "$marker" && ! package-lock.json -nt "$marker" ]]; then
    step "npm: node_modules up to date"
    return
  fi
  step "npm: npm ci"
  npm ci --no-audit --no-fund
}

# --- Temporal CLI --------------------------------------------------------------

build_temporal_cli() {
  local go_bin
  go_bin="$(command -v go || true)"
  if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then
    go_bin=/usr/local/go/bin/go
  fi
  if [[ -z "$go_bin" ]]; then
    fail "Temporal CLI not found and Go is missing, so it cannot be built. Install Go, or set TEMPORAL_CLI to an existing temporal binary, and rerun."
  fi

  local log="$TOOLS_DIR/go-install.log"
  step "temporal: building CLI v${TEMPORAL_VERSION} with go install into .tools/bin (several minutes on a fresh machine; log: .tools/go-install.log)"
  # The Go module and build caches (go env GOMODCACHE, GOCACHE) stay between
  # runs, so a rebuild after deleting .tools is much faster than the first.
  if ! GOBIN="$TOOLS_DIR/bin" "$go_bin" install -ldflags "$TEMPORAL_LDFLAGS" "$TEMPORAL_MODULE" >"$log" 2>&1; then
    show_log_tail "$log"
    fail "go install of the Temporal CLI failed (full log: $log)"
  fi
}

# Prints an absolute form of a path that may be relative to the current folder.
absolute_path() {
  local path="$1"
  if [[ "$path" == /* ]]; then
    printf '%s\n' "$path"
  else
    printf '%s/%s\n' "$(cd "$(dirname "$path")" && pwd)" "$(basename "$path")"
  fi
}

resolve_temporal_cli() {
  local binary origin recorded=""
  # The Makefile exports the path recorded in .tools/env. When that binary
  # was deleted since, resolve again instead of failing on the stale path.
  if [[ -f "$TOOLS_DIR/env" ]]; then
    recorded="$(sed -n 's/^TEMPORAL_CLI=//p' "$TOOLS_DIR/env")"
  fi
  if [[ -n "${TEMPORAL_CLI:-}" && "$TEMPORAL_CLI" == "$recorded" && ! -x "$TEMPORAL_CLI" ]]; then
    step "temporal: recorded $TEMPORAL_CLI no longer exists, resolving again"
    TEMPORAL_CLI=""
  fi

  if [[ -n "${TEMPORAL_CLI:-}" ]]; then
    [[ -x "$TEMPORAL_CLI" && -f "$TEMPORAL_CLI" ]] ||
      fail "TEMPORAL_CLI=$TEMPORAL_CLI is not an executable file. Point it at a temporal binary, or unset it so setup finds or builds one."
    binary="$(absolute_path "$TEMPORAL_CLI")"
    origin="from TEMPORAL_CLI"
  elif binary="$(command -v temporal)"; then
    binary="$(absolute_path "$binary")"
    origin="found on PATH"
  elif [[ -x "$TOOLS_DIR/bin/temporal" ]]; then
    binary="$TOOLS_DIR/bin/temporal"
    origin="in .tools/bin"
  else
    build_temporal_cli
    binary="$TOOLS_DIR/bin/temporal"
    origin="built"
  fi

  local version
  version="$("$binary" --version 2>&1 | head -n 1)" ||
    fail "$binary --version failed: $version"
  step "temporal: $binary ($origin; $version)"

  # .tools/env is read by the Makefile and by src/temporal/dev-server.ts.
  # Rewrite it only when the path changed, so its mtime stays stable.
  local env_file="$TOOLS_DIR/env"
  local content="TEMPORAL_CLI=$binary"
  if [[ ! -f "$env_file" || "$(cat "$env_file")" != "$content" ]]; then
    printf '%s\n' "$content" >"$env_file"
  fi
}

# --- Debian packages and the Docker engine -----------------------------------

docker_responds() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# Checks one Debian package by the files it provides, so that equivalent
# installs from elsewhere (for example docker-ce instead of docker.io) count.
package_present() {
  case "$1" in
  docker.io) command -v dockerd >/dev/null 2>&1 ;;
  faketime) command -v faketime >/dev/null 2>&1 ;;
  iproute2) command -v ip >/dev/null 2>&1 ;;
  busybox-static)
    # The dynamic "busybox" package also provides /bin/busybox, but only the
    # static build runs in an image that has no C library.
    if command -v dpkg-query >/dev/null 2>&1; then
      dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'
    else
      [[ -x "$BUSYBOX_BIN" ]]
    fi
    ;;
  *) return 1 ;;
  esac
}

apt_lists_present() {
  compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

install_apt_packages() {
  local log="$TOOLS_DIR/apt.log"
  : >"$log"
  if ! apt_lists_present; then
    step "apt: apt-get update"
    apt-get update >>"$log" 2>&1 || {
      show_log_tail "$log"
      fail "apt-get update failed (full log: $log)"
    }
  fi
  step "apt: installing $*"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >>"$log" 2>&1; then
    # The package lists may be outdated, so refresh them once and try again.
    step "apt: install failed, running apt-get update and retrying"
    if ! apt-get update >>"$log" 2>&1 ||
      ! DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >>"$log" 2>&1; then
      show_log_tail "$log"
      fail "apt-get install $* failed (full log: $log)"
    fi
  fi
}

ensure_system_packages() {
  local wanted=(busybox-static faketime iproute2)
  if ! docker_responds; then
    wanted+=(docker.io)
  fi

  local missing=() package
  for package in "${wanted[@]}"; do
    package_present "$package" || missing+=("$package")
  done
  if ((${#missing[@]} == 0)); then
    step "packages: ${wanted[*]} present"
    return
  fi

  if [[ "$EUID" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    fail "missing packages: ${missing[*]}. Install them (on Debian: sudo apt-get install -y ${missing[*]}) and rerun."
  fi
  install_apt_packages "${missing[@]}"
}

dockerd_running() {
  local pid_file=/var/run/docker.pid
  [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

ensure_docker_engine() {
  if docker_responds; then
    step "docker: engine running (server $(docker version -f '{{.Server.Version}}' 2>/dev/null))"
    return
  fi

  command -v docker >/dev/null 2>&1 ||
    fail "docker client not found. Install Debian's docker.io package and rerun."
  if [[ "$EUID" -ne 0 ]]; then
    fail "the Docker engine does not respond to 'docker info'. Start it (for example: sudo systemctl start docker) or run this script as root, then rerun."
  fi

  local log="$TOOLS_DIR/dockerd.log"
  local started_pid=""
  if dockerd_running; then
    step "docker: dockerd is running but does not respond yet, waiting up to ${DOCKER_WAIT_SECONDS}s"
  else
    step "docker: starting dockerd in the background (log: .tools/dockerd.log)"
    # setsid and nohup detach dockerd from this script's session, so the
    # engine keeps running after setup and make exit.
    setsid nohup dockerd >>"$log" 2>&1 </dev/null &
    started_pid=$!
  fi

  local waited=0
  while ! docker_responds; do
    if [[ -n "$started_pid" ]] && ! kill -0 "$started_pid" 2>/dev/null; then
      show_log_tail "$log"
      fail "dockerd exited during startup (full log: $log)"
    fi
    if ((waited >= DOCKER_WAIT_SECONDS)); then
      if [[ -n "$started_pid" ]]; then
        show_log_tail "$log"
        fail "the Docker engine did not respond to 'docker info' within ${DOCKER_WAIT_SECONDS}s (dockerd log: $log)"
      fi
      fail "the running dockerd (pid $(cat /var/run/docker.pid)) did not respond to 'docker info' within ${DOCKER_WAIT_SECONDS}s. Check its log, or stop it and rerun to start a new one."
    fi
    sleep 1
    waited=$((waited + 1))
  done
  step "docker: engine running after ${waited}s (server $(docker version -f '{{.Server.Version}}' 2>/dev/null))"
}

# --- Images ------------------------------------------------------------------

# Builds gitfleet/busybox:local unless an image built from the same Dockerfile
# and busybox binary exists. The hash of both is stored as an image label.
build_busybox_image() {
  [[ -x "$BUSYBOX_BIN" ]] ||
    fail "$BUSYBOX_BIN not found. Install Debian's busybox-static package (or set BUSYBOX_BIN to a static busybox) and rerun."

  local inputs_hash current_hash
  inputs_hash="$(cat "$BUSYBOX_DIR/Dockerfile" "$BUSYBOX_BIN" | sha256sum | cut -d ' ' -f 1)"
  current_hash="$(docker image inspect -f "{{ index .Config.Labels \"$IMAGE_HASH_LABEL\" }}" "$BUSYBOX_IMAGE" 2>/dev/null || true)"
  if [[ "$current_hash" == "$inputs_hash" ]]; then
    step "image: $BUSYBOX_IMAGE up to date"
    return
  fi

  if command -v ldd >/dev/null 2>&1 && ldd "$BUSYBOX_BIN" >/dev/null 2>&1; then
    fail "$BUSYBOX_BIN is dynamically linked and cannot run in a FROM scratch image. Install Debian's busybox-static package and rerun."
  fi

  local log="$TOOLS_DIR/docker-build.log"
  step "image: building $BUSYBOX_IMAGE (log: .tools/docker-build.log)"
  cp "$BUSYBOX_BIN" "$BUSYBOX_DIR/busybox"
  chmod 0755 "$BUSYBOX_DIR/busybox"
  # The engine (20.10) is older than BuildKit-only clients expect, and buildx
  # is not installed, so the classic builder is used.
  if ! DOCKER_BUILDKIT=0 docker build --label "$IMAGE_HASH_LABEL=$inputs_hash" \
    -t "$BUSYBOX_IMAGE" "$BUSYBOX_DIR" >"$log" 2>&1; then
    show_log_tail "$log"
    fail "docker build of $BUSYBOX_IMAGE failed (full log: $log)"
  fi
  if ! docker run --rm --network none "$BUSYBOX_IMAGE" sh -c 'echo ok' | grep -qx ok; then
    fail "the freshly built $BUSYBOX_IMAGE does not run 'sh'"
  fi
}

# --- TypeScript build --------------------------------------------------------

# dist/.build-stamp is touched after each successful build, so the build is
# skipped while no input is newer than it. Deleted files count too, because
# deleting a file updates its folder's mtime.
build_project() {
  local stamp="dist/.build-stamp"
  local inputs=() path
  for path in src workflows activities test bench tsconfig.json package.json package-lock.json; do
    [[ -e "$path" ]] && inputs+=("$path")
  done

  if [[ -f "$stamp" ]] && [[ -z "$(find "${inputs[@]}" -newer "$stamp" -print -quit)" ]]; then
    step "build: dist up to date"
    return
  fi
  step "build: npm run build"
  if ! npm run --silent build; then
    fail "npm run build failed (see the compiler output above)"
  fi
  touch "$stamp"
}

# --- Compose build contexts (opt-in) -----------------------------------------

# Copies the shared libraries that ldd lists for a binary to the same paths
# under a root folder, so the binary runs in an image without a C library.
copy_libraries() {
  local root="$1" binary="$2" library
  while read -r library; do
    [[ -e "$root$library" ]] || install -D -m 0755 "$library" "$root$library"
  done < <(ldd "$binary" 2>/dev/null | grep -o '/[^ ]*' || true)
}

# Copies each file to the same path under a root folder, with its libraries.
copy_with_libraries() {
  local root="$1" file
  shift
  for file in "$@"; do
    [[ -e "$root$file" ]] || install -D -m 0755 "$file" "$root$file"
    copy_libraries "$root" "$file"
  done
}

stage_compose_contexts() {
  command -v ldd >/dev/null 2>&1 || fail "ldd not found; it is needed to stage the compose images (Debian package libc-bin)"
  local compose_dir="$TOOLS_DIR/compose"
  local temporal_binary
  temporal_binary="$(sed -n 's/^TEMPORAL_CLI=//p' "$TOOLS_DIR/env")"

  step "compose: staging .tools/compose/temporal"
  rm -rf "$compose_dir/temporal"
  mkdir -p "$compose_dir/temporal/rootfs/usr/local/bin"
  cp "$ROOT/images/temporal/Dockerfile" "$compose_dir/temporal/Dockerfile"
  install -m 0755 "$temporal_binary" "$compose_dir/temporal/rootfs/usr/local/bin/temporal"
  copy_libraries "$compose_dir/temporal/rootfs" "$temporal_binary"

  step "compose: staging .tools/compose/gitfleet (node, git and the built app)"
  local app_root="$compose_dir/gitfleet/rootfs"
  rm -rf "$compose_dir/gitfleet"
  mkdir -p "$app_root/app" "$app_root/usr/lib"
  cp "$ROOT/images/gitfleet/Dockerfile" "$compose_dir/gitfleet/Dockerfile"
  copy_with_libraries "$app_root" "$(readlink -f "$(command -v node)")" "$(command -v git)"
  if [[ "$(readlink -f "$(command -v node)")" != /usr/bin/node ]]; then
    mkdir -p "$app_root/usr/bin"
    ln -sf "$(readlink -f "$(command -v node)")" "$app_root/usr/bin/node"
  fi
  # git runs helpers such as git-upload-pack from its exec path. cp -a keeps
  # the hard links between them, so the folder stays small.
  local git_exec_path
  git_exec_path="$(git --exec-path)"
  mkdir -p "$app_root$(dirname "$git_exec_path")"
  cp -a "$git_exec_path" "$app_root$git_exec_path"
  local helper
  while IFS= read -r -d '' helper; do
    copy_with_libraries "$app_root" "$helper"
  done < <(find "$git_exec_path" -maxdepth 1 -type f -perm -u+x -print0)
  if [[ -d /usr/share/git-core ]]; then
    mkdir -p "$app_root/usr/share"
    cp -a /usr/share/git-core "$app_root/usr/share/"
  fi
  # Native addons (Temporal core bridge and others) load further libraries.
  local addon
  while IFS= read -r -d '' addon; do
    copy_libraries "$app_root" "$addon"
  done < <(find "$ROOT/node_modules" -name '*.node' -path '*linux*' -print0)
  # Hard links make the copy of node_modules fast and free of extra space.
  cp -al "$ROOT/node_modules" "$app_root/app/node_modules" 2>/dev/null || cp -a "$ROOT/node_modules" "$app_root/app/node_modules"
  cp -a "$ROOT/dist" "$ROOT/package.json" "$ROOT/bin" "$app_root/app/"
  step "compose: contexts ready; build with: DOCKER_BUILDKIT=0 docker compose build"
}

main() {
  local stage_compose=false
  while (($# > 0)); do
    case "$1" in
    --compose) stage_compose=true ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      return
      ;;
    *) fail "unknown argument: $1 (expected --compose or --help)" ;;
    esac
    shift
  done

  install_node_modules
  resolve_temporal_cli
  ensure_system_packages
  ensure_docker_engine
  build_busybox_image
  build_project
  if [[ "$stage_compose" == true ]]; then
    stage_compose_contexts
  fi
  step "done in ${SECONDS}s"
}

main "$@"
