#!/usr/bin/env bash
# Sourced by install-deps.sh and install-test-deps.sh: apt_install_missing PKG... installs the
# Debian packages of the list that are not installed yet (as root, or with sudo), and nothing
# when all are.
apt_install_missing() {
  local sudo="" missing=() p
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "${missing[@]}"
  fi
}
