#!/usr/bin/env bash
# A local certificate authority and one server certificate for Redis and PostgreSQL, for
# the TLS runs (compose's TLS variant, the container test, your own servers):
#   infra/tls/make-certs.sh [DIR]      (default: .tls; git-ignored, never committed)
# DIR gets ca.crt (what clients trust: rediss://…?ssl_ca_certs=DIR/ca.crt,
# postgresql://…?sslmode=verify-full&sslrootcert=DIR/ca.crt), server.crt and server.key.
# The server certificate names localhost, 127.0.0.1 and the compose/Kubernetes service
# names redis and postgres; TLS_NAMES adds more (comma-separated DNS names).
# A certificate already there is kept: delete DIR to make new ones.
set -euo pipefail
dir=${1:-.tls}
days=${TLS_DAYS:-825}
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
if [[ -s ca.crt && -s server.crt && -s server.key ]]; then
  echo "certificates in $dir kept (delete the directory to make new ones)"
  exit 0
fi
umask 077
names="DNS:localhost,IP:127.0.0.1,DNS:redis,DNS:postgres"
for extra in $(tr , " " <<<"${TLS_NAMES:-}"); do names="$names,DNS:$extra"; done
openssl req -x509 -newkey rsa:3072 -nodes -days "$days" -subj "/CN=AlphaSaga local CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=alphasaga-servers" -keyout server.key -out server.csr 2>/dev/null
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
  -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$names") \
  -out server.crt 2>/dev/null
rm -f server.csr ca.srl
# The servers' key: readable by its owner (PostgreSQL refuses a key others can read); the
# CA's key stays here, for more certificates, and goes nowhere else.
chmod 600 server.key ca.key
chmod 644 ca.crt server.crt
echo "certificates in $dir: ca.crt (trust it), server.crt and server.key ($names)"
