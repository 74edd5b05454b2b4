#!/bin/sh
# Fails loudly if the upgrade lost anything: every order has its total, and
# every document's blob is where its row says, with the right content.
set -eu
q() { psql -v ON_ERROR_STOP=1 -At "$REHEARSE_DATABASE" -c "$1"; }
missing=$(q "SELECT count(*) FROM orders WHERE total_cents IS DISTINCT FROM qty::bigint * price_cents")
[ "$missing" = 0 ] || { echo "VERIFICATION FAILED: $missing orders without the right total" >&2; exit 1; }
flat=$(find blobs/flat -type f 2>/dev/null | wc -l)
[ "$flat" = 0 ] || { echo "VERIFICATION FAILED: $flat blobs left in blobs/flat" >&2; exit 1; }
q "SELECT sha256 || '  ' || path FROM documents" > /tmp/rehearse-verify.$$
if ! sha256sum --quiet -c /tmp/rehearse-verify.$$ >&2; then
  rm -f /tmp/rehearse-verify.$$
  echo "VERIFICATION FAILED: a blob is missing or changed" >&2
  exit 1
fi
rm -f /tmp/rehearse-verify.$$
echo "verified $(q 'SELECT count(*) FROM orders') orders and $(q 'SELECT count(*) FROM documents') documents"
