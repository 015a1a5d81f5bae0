#!/bin/sh
# Runs before `npm start` and `npm test`: installs the locked dependencies (Node 24 among
# them, as the `node` package) when node_modules is missing or older than the lockfile, so
# both commands work on a fresh clone with nothing but npm.
set -e
cd "$(dirname "$0")/.."
marker=node_modules/.package-lock.json
if [ ! -f "$marker" ] || [ package-lock.json -nt "$marker" ] || [ ! -x node_modules/.bin/node ]; then
  echo "awooop: installing dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
