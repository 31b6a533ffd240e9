#!/bin/sh
# The sidecar image's entry point. The sidecar reads its secrets from
# PW_*_FILE itself; the operator commands take DATABASE_URL from the
# environment, so a DATABASE_URL_FILE is read here.
set -eu
if [ -n "${DATABASE_URL_FILE:-}" ]; then
  if [ -n "${DATABASE_URL:-}" ]; then
    echo "entrypoint: DATABASE_URL and DATABASE_URL_FILE are both set; set one" >&2
    exit 64
  fi
  DATABASE_URL=$(cat "$DATABASE_URL_FILE")
  export DATABASE_URL
fi
exec kms-sidecar "$@"
