#!/bin/sh
# Runs before `npm start`, `npm test`, `npm run awooop` and the bench/chaos programs: installs
# the locked dependencies (Node 24 among them, as the `node` package) when node_modules is
# missing or older than the lockfile, so each works on a fresh clone with nothing but npm.
# Its output goes to stderr so `$(npm run -s awooop -- keys create ...)` captures only the key.
set -e
cd "$(dirname "$0")/.."
marker=node_modules/.package-lock.json
if [ ! -f "$marker" ] || [ package-lock.json -nt "$marker" ] || [ ! -x node_modules/.bin/node ]; then
  echo "awooop: installing dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
