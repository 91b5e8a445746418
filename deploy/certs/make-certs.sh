#!/usr/bin/env bash
# The TLS material of the deployment's Kafka listeners (SASL_SSL), made with openssl (and
# keytool when present) into a directory, by default deploy/secrets/:
#
#   ca.key, ca.crt                the deployment's own CA (ca.key: mode 600, never mounted;
#                                 keep it offline, it signs the next broker certificate)
#   kafka.keystore.p12            the broker's key and certificate (PKCS12), signed by the CA,
#                                 naming every host clients connect to (KAFKA_CERT_HOSTS)
#   kafka.keystore.password       the keystore's password
#   truststore.p12, truststore.password
#                                 the CA as a PKCS12 truststore, for departments' Java clients
#                                 older than Kafka 2.7 (newer ones and Python take ca.crt)
#
#   deploy/certs/make-certs.sh [DIR]
#   KAFKA_CERT_HOSTS=kafka,localhost,127.0.0.1,kafka.example.gov.cn deploy/certs/make-certs.sh
#
# An existing CA is kept (clients keep trusting it); the broker's key and certificate are
# made anew on each run (a renewal: restart kafka afterwards). Files are readable by all
# (the containers run as other users and read them through bind mounts) in a directory
# only its owner may enter.
set -euo pipefail

out=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/secrets}
hosts=${KAFKA_CERT_HOSTS:-kafka,localhost,127.0.0.1}
ca_days=${CA_DAYS:-3650}
broker_days=${BROKER_DAYS:-825}

die() {
    echo "make-certs: $*" >&2
    exit 1
}
command -v openssl > /dev/null || die "openssl is not on PATH"

mkdir -p "$out"
chmod 700 "$out"
cd "$out"
umask 022
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ ! -f ca.key || ! -f ca.crt ]]; then
    (umask 077 && openssl req -x509 -new -newkey rsa:3072 -nodes -sha256 -days "$ca_days" \
        -subj "/CN=jiancha Kafka CA" -keyout ca.key -out ca.crt \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2> "$work/log") ||
        die "$(cat "$work/log")"
    chmod 644 ca.crt
    echo "make-certs: made the CA $out/ca.crt"
else
    echo "make-certs: keeping the CA $out/ca.crt"
fi

san=()
IFS=',' read -r -a names <<< "$hosts"
for name in "${names[@]}"; do
    name=${name//[[:space:]]/}
    [[ -n $name ]] || continue
    if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
        san+=("IP:$name")
    else
        san+=("DNS:$name")
    fi
done
[[ ${#san[@]} -gt 0 ]] || die "KAFKA_CERT_HOSTS names no host"
first=${names[0]//[[:space:]]/}

if [[ ! -s kafka.keystore.password ]]; then
    openssl rand -hex 24 > kafka.keystore.password
fi
(umask 077 && openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=$first" \
    -keyout "$work/broker.key" -out "$work/broker.csr" 2> "$work/log") || die "$(cat "$work/log")"
{
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    echo "subjectAltName=$(IFS=,; echo "${san[*]}")"
} > "$work/broker.ext"
openssl x509 -req -sha256 -days "$broker_days" -in "$work/broker.csr" -CA ca.crt -CAkey ca.key \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$work/broker.ext" \
    -out "$work/broker.crt" 2> "$work/log" || die "$(cat "$work/log")"
openssl pkcs12 -export -name kafka -in "$work/broker.crt" -inkey "$work/broker.key" \
    -certfile ca.crt -out kafka.keystore.p12 -passout file:kafka.keystore.password \
    2> "$work/log" || die "$(cat "$work/log")"
chmod 644 kafka.keystore.p12 kafka.keystore.password
echo "make-certs: made $out/kafka.keystore.p12 for ${san[*]}"

if command -v keytool > /dev/null; then
    [[ -s truststore.password ]] || openssl rand -hex 12 > truststore.password
    rm -f truststore.p12
    keytool -importcert -noprompt -alias jiancha-ca -file ca.crt -keystore truststore.p12 \
        -storetype PKCS12 -storepass:file truststore.password > "$work/log" 2>&1 ||
        die "$(cat "$work/log")"
    chmod 644 truststore.p12 truststore.password
    echo "make-certs: made $out/truststore.p12 (for Java clients; others take ca.crt)"
else
    echo "make-certs: no keytool: no truststore.p12 (Java clients since Kafka 2.7 take ca.crt as ssl.truststore.type=PEM)"
fi
