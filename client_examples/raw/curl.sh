#!/usr/bin/env bash
# SendMessage, then GetStatus, with curl and the raw envelopes beside this script.
#
#   client_examples/raw/curl.sh [URL] [USERNAME] [PASSWORD] [CA_FILE]
#
# Defaults fit `make run`: https://localhost:8443/soap/v1, the development account from
# var/dev-account.txt, and the development certificate var/tls/dev-cert.pem.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
url="${1:-https://localhost:8443/soap/v1}"
username="${2:-$(sed -n 's/^username=//p' var/dev-account.txt 2>/dev/null)}"
password="${3:-$(sed -n 's/^password=//p' var/dev-account.txt 2>/dev/null)}"
ca_file="${4:-var/tls/dev-cert.pem}"
reference="curl-$(date +%Y%m%d-%H%M%S)-$$"

fill() {  # the envelope with our values (they must not contain & < > or |)
  sed -e "s|USERNAME|${username}|" -e "s|PASSWORD|${password}|" -e "s|REFERENCE|${reference}|" "$1"
}

for operation in SendMessage GetStatus; do
  echo "--- ${operation}"
  fill "${here}/${operation}.xml" | curl --silent --show-error --fail-with-body \
    --cacert "${ca_file}" \
    -H 'Content-Type: text/xml; charset=utf-8' \
    -H "SOAPAction: \"${operation}\"" \
    --data-binary @- "${url}"
  echo
done
