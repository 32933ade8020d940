#!/usr/bin/env bash
# Install the Debian packages the tests drive, unless they are there already: a real
# browser (chromium), real SOAP toolkits (PHP's SoapClient, Java's wsimport/JAX-WS),
# xmllint, PostgreSQL's pg_dump and pg_restore (backup and restore), and Postfix (a real
# mail server relaying to the SMTP channel; the tests start private instances of it).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v php >/dev/null 2>&1 || missing+=(php-cli)
php -m 2>/dev/null | grep -qx soap || missing+=(php-soap)
command -v wsimport >/dev/null 2>&1 || missing+=(jaxws)
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
command -v pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
[ -x /usr/sbin/postfix ] || missing+=(postfix)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing for the tests: run 'sudo apt-get install ${missing[*]}'" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
