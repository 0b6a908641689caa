#!/usr/bin/env bash
# Installs what building and testing Keel needs when it is missing; safe to run again.
#   protoc (protobuf-compiler) builds etcd-client; etcd (etcd-server) runs in the HA tests.
set -euo pipefail

missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || missing+=(etcd-server)

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # etcd-server's package starts a system etcd on 2379; the tests use their own ports.
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component" >/dev/null 2>&1 || echo "setup: cannot add $component" >&2
  fi
done

# The Mesos v1 API tests run real Mesos clients: pymesos (scheduler and executor
# drivers) and avmesos-cli (the Mesos CLI), in a virtual environment at .venv-test.
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-test"
venv_ok() {
  [ -x "$venv/bin/mesos-cli" ] &&
    "$venv/bin/python" -c "import pymesos, http_parser.pyparser, addict, kazoo, avmesos, requests" >/dev/null 2>&1
}
if ! venv_ok; then
  echo "setup: creating the Python test environment at $venv" >&2
  if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  pip="$venv/bin/pip"
  # pymesos needs http-parser, whose C extension does not build on Python >= 3.11;
  # pymesos falls back to its pure-Python parser, so only the Python modules go in
  # (with the metadata that tells pip the requirement is met).
  sdist="$(mktemp -d)"
  "$pip" download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$sdist" http-parser==0.9.0
  tar -xzf "$sdist"/http-parser-0.9.0.tar.gz -C "$sdist"
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  mkdir -p "$site/http_parser" "$site/http_parser-0.9.0.dist-info"
  cp "$sdist"/http-parser-0.9.0/http_parser/*.py "$site/http_parser/"
  printf 'Metadata-Version: 2.1\nName: http-parser\nVersion: 0.9.0\n' >"$site/http_parser-0.9.0.dist-info/METADATA"
  printf 'setup.sh\n' >"$site/http_parser-0.9.0.dist-info/INSTALLER"
  : >"$site/http_parser-0.9.0.dist-info/RECORD"
  rm -rf "$sdist"
  # avmesos-cli 1.0.0 is the newest that installs on Python 3.11; it imports
  # requests without declaring it.
  "$pip" install -q --disable-pip-version-check pymesos==0.3.15 avmesos-cli==1.0.0 requests
  venv_ok || { echo "setup: the Python test environment is incomplete" >&2; exit 1; }
fi
