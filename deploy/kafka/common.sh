# Shared by entrypoint.sh, healthcheck.sh and create-topics.sh (sourced, not run).
# Credentials go into Kafka's SCRAM string ('SCRAM-SHA-256=[name=…,password=…]') and into
# JAAS lines ('password="…"'), so only characters that need no quoting in either are allowed.

KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
JIANCHA_KAFKA_CONF_DIR=${JIANCHA_KAFKA_CONF_DIR:-$KAFKA_HOME/config/jiancha}
KAFKA_ADMIN_USERNAME=${KAFKA_ADMIN_USERNAME:-admin}
KAFKA_USERNAME=${KAFKA_USERNAME:-jiancha}
SCRAM_MECHANISM=SCRAM-SHA-256

die() {
    echo "jiancha-kafka: $*" >&2
    exit 1
}

check_credential() { # NAME VALUE
    local name=$1 value=$2
    [[ -n $value ]] || die "$name is empty: set it in .env (see deploy/.env.example)"
    [[ $value =~ ^[A-Za-z0-9._~+-]+$ ]] ||
        die "$name may only contain letters, digits and . _ ~ + - (it is put into SCRAM and JAAS strings unquoted)"
}

jaas_line() { # USER PASSWORD
    printf 'org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";' "$1" "$2"
}

write_client_properties() { # FILE USER PASSWORD
    (
        umask 077
        {
            echo "security.protocol=SASL_PLAINTEXT"
            echo "sasl.mechanism=$SCRAM_MECHANISM"
            echo "sasl.jaas.config=$(jaas_line "$2" "$3")"
        } > "$1"
    )
}
