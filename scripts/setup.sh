#!/usr/bin/env bash
# One set-up for everything: Debian packages, a virtualenv in .venv, the project installed editable.
# Idempotent: a second run only checks. Run as root on Debian (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(postgresql redis-server pcscd vsmartcard-vpcd libpcsclite-dev swig chromium fonts-noto-cjk tesseract-ocr wrk strace tmux iproute2
              python3-venv build-essential
              patroni etcd-server haproxy redis-sentinel gettext-base curl)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.shikaku-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  # .[dev] = the server, loader and terminal extras, the testbed's faker, and the test tools. The face
  # check needs no face_recognition (it pins a source build of dlib): dlib-bin + face_recognition_models.
  .venv/bin/pip install -q -e ".[dev]"
  touch "$stamp"
fi
