#!/usr/bin/env bash
# Installs the real open-source DC/OS CLI (PyPI `dcoscli` 0.6.1 with its library `dcos`
# 0.6.1) into a venv and prints the path of its `dcos` executable. Idempotent: a venv
# that already has this exact set (stamp file) is reused as it is. Only PyPI is used.
#
#   DCOS_CLI_VENV   where the venv lives (default: $XDG_CACHE_HOME or ~/.cache, basalt/dcoscli-venv)
#   DCOS_CLI_PYTHON the interpreter that makes it (default: Debian's /usr/bin/python3, else python3)
#
# Why not `pip install dcoscli`: 0.6.1 pins cryptography==2.0.2, which has no wheel for
# Python 3.11 and no longer builds. So dcoscli and dcos are installed with --no-deps and
# their real dependencies are pinned below: the versions dcoscli asks for where they still
# work on 3.11 (docopt, pkginfo, sseclient, retrying, jsonschema 2.x, pager, prettytable,
# PyJWT 1.4.2), modern ones where its range allows it (requests, pygments, six, toml) or
# where the pin cannot install (cryptography). virtualenv is left out: dcoscli only uses it
# to install CLI subcommand packages from a cluster's package repository.
#
# dcos 0.6.1 itself uses collections.Mapping / MutableMapping / Sequence, which Python 3.10
# removed (they live in collections.abc); no version of dcos avoids that. Rather than
# patching the package, the venv gets a one-line .pth file that aliases those three names
# back onto `collections` at interpreter start (it only touches this venv).
set -euo pipefail

VENV="${DCOS_CLI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/basalt/dcoscli-venv}"
if [ -n "${DCOS_CLI_PYTHON:-}" ]; then
  PY="$DCOS_CLI_PYTHON"
elif [ -x /usr/bin/python3 ]; then
  PY=/usr/bin/python3
else
  PY=python3
fi

PKGS=(
  dcoscli==0.6.1
  dcos==0.6.1
  docopt==0.6.2
  pkginfo==1.2.1
  toml==0.10.2
  sseclient==0.0.19
  retrying==1.3.3
  jsonschema==2.6.0
  pager==3.3
  prettytable==0.7.2
  PyJWT==1.4.2
  Pygments==2.19.2
  six==1.17.0
  requests==2.32.4
  urllib3==2.5.0
  idna==3.10
  charset-normalizer==3.4.3
  certifi==2025.8.3
  cryptography==45.0.7
  cffi==1.17.1
  pycparser==2.22
)
COMPAT='import collections, collections.abc; collections.Mapping = collections.abc.Mapping; collections.MutableMapping = collections.abc.MutableMapping; collections.Sequence = collections.abc.Sequence'
STAMP_WANT="$(printf '%s\n' "${PKGS[@]}" "$COMPAT" "$("$PY" -c 'import sys; print(sys.version)')")"

stamp="$VENV/.basalt-dcoscli-stamp"
if [ -x "$VENV/bin/dcos" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$STAMP_WANT" ]; then
  echo "$VENV/bin/dcos"
  exit 0
fi

echo "dcos-cli: creating $VENV with $PY" >&2
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
# --no-deps: the list above is the whole closure (see the header for why).
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
  "${PKGS[@]}" >&2
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$COMPAT" >"$site/basalt_collections_abc_compat.pth"
"$VENV/bin/dcos" --version >/dev/null
echo "$STAMP_WANT" >"$stamp"
echo "$VENV/bin/dcos"
