#!/usr/bin/env bash
# Print the path of a Python 3.12 interpreter, or explain how to get one.
# Tries: $L2A_PYTHON, python3.12 on PATH, pyenv's versions, uv-managed pythons.
set -u
try() { "$1" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { command -v "$1" || echo "$1"; exit 0; }; }
[ -n "${L2A_PYTHON:-}" ] && try "$L2A_PYTHON"
try python3.12
for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12 \
         "$HOME"/.local/share/uv/python/cpython-3.12*/bin/python3.12; do
  [ -x "$p" ] && try "$p"
done
echo "l2a needs Python 3.12: install it (apt install python3.12, pyenv install 3.12, or uv python install 3.12) or set L2A_PYTHON" >&2
exit 1
