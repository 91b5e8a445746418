# Shared by the scripts in this directory (sourced, not run).
# Credentials go into Kafka's SCRAM strings and JAAS lines ('password="…"'), so only
# characters that need no quoting in either are allowed. Every password is read from a file
# (a Docker secret) named by a *_FILE variable, never from the environment or a command line.

KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
JIANCHA_KAFKA_CONF_DIR=${JIANCHA_KAFKA_CONF_DIR:-$KAFKA_HOME/config/jiancha}
KAFKA_ADMIN_USERNAME=${KAFKA_ADMIN_USERNAME:-admin}
SCRAM_MECHANISM=SCRAM-SHA-256
SCRAM_ITERATIONS=8192
# every listener clients reach speaks SASL over TLS
CLIENT_SECURITY_PROTOCOL=SASL_SSL

die() {
    echo "jiancha-kafka: $*" >&2
    exit 1
}

check_credential() { # NAME VALUE
    local name=$1 value=$2
    [[ -n $value ]] || die "$name is empty (see deploy/.env.example)"
    [[ $value =~ ^[A-Za-z0-9._~+-]+$ ]] ||
        die "$name may only contain letters, digits and . _ ~ + - (it is put into SCRAM and JAAS strings unquoted)"
}

check_file() { # VARIABLE: the variable names a readable file
    local var=$1
    local file=${!var:-}
    [[ -n $file ]] || die "$var is not set (the path of a file; see deploy/.env.example)"
    [[ -f $file && -r $file ]] || die "$var: cannot read $file"
}

read_secret() { # VARIABLE -> the one-line secret in the file it names (trailing newline dropped)
    local var=$1
    check_file "$var"
    local value
    value=$(< "${!var}")
    [[ $value != *$'\n'* ]] || die "$var: ${!var} holds more than one line"
    check_credential "$var" "$value"
    printf '%s' "$value"
}

jaas_line() { # USER PASSWORD
    printf 'org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";' "$1" "$2"
}

write_client_properties() { # FILE USER PASSWORD: a Kafka tool's --command-config
    check_file KAFKA_CA_FILE
    (
        umask 077
        {
            echo "security.protocol=$CLIENT_SECURITY_PROTOCOL"
            echo "sasl.mechanism=$SCRAM_MECHANISM"
            echo "sasl.jaas.config=$(jaas_line "$2" "$3")"
            # the broker's certificate must be signed by the deployment's CA and name the
            # host the tool connects to (hostname verification stays on)
            echo "ssl.truststore.type=PEM"
            echo "ssl.truststore.location=$KAFKA_CA_FILE"
        } > "$1"
    )
}

make_admin_client_properties() { # sets ADMIN_PROPS: the admin's --command-config, removed on exit
    local password
    password=$(read_secret KAFKA_ADMIN_PASSWORD_FILE)
    ADMIN_PROPS=$(mktemp)
    # shellcheck disable=SC2064  # expanded now: the trap removes this very file
    trap "rm -f '$ADMIN_PROPS'" EXIT
    write_client_properties "$ADMIN_PROPS" "$KAFKA_ADMIN_USERNAME" "$password"
}
