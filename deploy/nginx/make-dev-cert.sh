#!/usr/bin/env sh
# A self-signed certificate for https://localhost, for trying the compose stack only.
# In production, put the real certificate and key in deploy/nginx/certs/ as tls.crt/tls.key.
set -eu
cd "$(dirname "$0")/certs"
openssl req -x509 -newkey rsa:2048 -sha256 -days 30 -nodes \
  -keyout tls.key -out tls.crt -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
chmod 600 tls.key
echo "wrote $(pwd)/tls.crt and tls.key"
