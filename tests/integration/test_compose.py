"""The deployment files, checked without a Docker engine.

* docker-compose.yml is validated by Debian's ``docker-compose`` 1.29 (``config -q``, skipped
  when it is not on PATH; ``.ci/install-tools`` installs it) and its structure is checked both
  on the file as written (anchors merged, ``${VAR:-default}`` resolved here) and on what
  ``docker-compose config`` resolved.
* The Kafka scripts in deploy/kafka/ run under bash against stub Kafka tools, fed with the
  environment that docker-compose.yml gives the kafka and kafka-init services, so the KRaft and
  SASL/SCRAM settings the broker would get are checked for real.
* dashboards/prometheus/prometheus.yml goes through ``promtool check config`` (skipped without
  promtool), once as mounted and once with the rules directory pointed at the repository, so
  the rule files in dashboards/prometheus/rules/ are checked too.
* The Dockerfile and .dockerignore are parsed.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
KAFKA_SCRIPTS = ROOT / "deploy" / "kafka"
PROMETHEUS_YML = ROOT / "dashboards" / "prometheus" / "prometheus.yml"
RULES_DIR = ROOT / "dashboards" / "prometheus" / "rules"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"

EXPECTED_SERVICES = {"kafka", "kafka-init", "redis", "worker", "prometheus", "grafana", "simulator"}
ONE_SHOT = {"kafka-init"}  # run to completion; nothing to health-check
NO_HTTP = {"simulator"}  # long-running but serves nothing: must disable the image's check
EXPECTED_TOPICS = {"approval-events": 8, "approval-events.dlq": 8, "complaints": 8}

DOCKER_COMPOSE = shutil.which("docker-compose")
PROMTOOL = shutil.which("promtool")
BASH = shutil.which("bash")

needs_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose is not on PATH (.ci/install-tools installs Debian's docker-compose)",
)
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not on PATH (.ci/install-tools installs Debian's prometheus package)",
)
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not on PATH")


# --- helpers -------------------------------------------------------------------------------

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_]\w*)(?P<op>:-|-|:\?|\?)?(?P<arg>[^}]*)\}"
    r"|(?P<bare>[A-Za-z_]\w*))"
)


def _env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {raw!r}"
        env[key.strip()] = value.strip()
    return env


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution, for the forms this file may use."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg")
        got = env.get(name)
        if op == ":-":
            return got if got else arg
        if op == "-":
            return got if got is not None else arg
        assert got, f"${{{name}}} is not set"
        return got

    return _VAR.sub(sub, value)


def _compose_env() -> dict[str, str]:
    """A minimal environment, so variables of the caller's shell cannot leak into the test."""
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}}
    env.setdefault("PATH", os.defpath)
    return env


def _docker_compose(*args: str, env_file: Path | None = ENV_EXAMPLE) -> subprocess.CompletedProcess:
    assert DOCKER_COMPOSE is not None
    cmd = [DOCKER_COMPOSE, "-f", str(COMPOSE_FILE)]
    if env_file is not None:
        cmd += ["--env-file", str(env_file)]
    return subprocess.run(
        [*cmd, *args], cwd=ROOT, env=_compose_env(), capture_output=True, text=True, timeout=120
    )


def _healthcheck_enabled(service: dict) -> bool:
    hc = service.get("healthcheck")
    if not hc or hc.get("disable"):
        return False
    test = hc.get("test")
    if isinstance(test, str):
        return test.strip().upper() != "NONE" and bool(test.strip())
    return bool(test) and test[0] != "NONE"


def _mounts(service: dict) -> dict[str, str]:
    """target -> source, for short ('src:dst[:mode]') and long volume syntax."""
    out: dict[str, str] = {}
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            out[vol["target"]] = vol.get("source", "")
        else:
            parts = vol.split(":")
            if len(parts) >= 2:
                out[parts[1]] = parts[0]
            else:
                out[parts[0]] = ""
    return out


def _host_path(source: str) -> Path:
    p = Path(source)
    return p if p.is_absolute() else (ROOT / p).resolve()


def _ports(service: dict) -> list[tuple[str, str, str]]:
    """(host_ip, published, target) for short and long port syntax."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append(
                (str(port.get("host_ip", "")), str(port.get("published", "")), str(port["target"]))
            )
            continue
        spec = str(port).split("/", 1)[0]
        parts = spec.split(":")
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            out.append(("", parts[0], parts[1]))
        else:
            out.append(("", "", parts[0]))
    return out


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _properties(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return _env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def raw_config(env_example: dict[str, str]) -> dict:
    return _interpolate(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")), env_example)


@pytest.fixture(scope="module")
def resolved_config() -> dict:
    if DOCKER_COMPOSE is None:
        pytest.skip("docker-compose is not on PATH (.ci/install-tools installs it)")
    done = _docker_compose("--profile", "simulator", "config")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


@pytest.fixture(params=["as-written", "docker-compose"], scope="module")
def config(request: pytest.FixtureRequest) -> dict:
    if request.param == "as-written":
        return request.getfixturevalue("raw_config")
    return request.getfixturevalue("resolved_config")


@pytest.fixture(scope="module")
def prometheus_yml() -> dict:
    return yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))


# --- docker-compose itself -----------------------------------------------------------------


@needs_compose
def test_docker_compose_validates_with_the_env_example() -> None:
    done = _docker_compose("config", "-q")
    assert done.returncode == 0, f"docker-compose config -q failed:\n{done.stderr}"
    assert "is not set" not in done.stderr, done.stderr


@needs_compose
def test_docker_compose_validates_with_the_defaults_alone(tmp_path: Path) -> None:
    # An empty env file also keeps a developer's ./.env out of the test.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = _docker_compose("--profile", "simulator", "config", env_file=empty)
    assert done.returncode == 0, done.stderr
    assert "is not set" not in done.stderr, "a variable has no default:\n" + done.stderr
    with_example = _docker_compose("--profile", "simulator", "config")
    assert yaml.safe_load(done.stdout) == yaml.safe_load(with_example.stdout), (
        "deploy/.env.example and the defaults in docker-compose.yml disagree"
    )


def test_every_variable_has_the_documented_default(env_example: dict[str, str]) -> None:
    def strings(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [s for k, v in node.items() for s in (*strings(k), *strings(v))]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return [node] if isinstance(node, str) else []

    # what compose interpolates: every string of the file, comments excluded
    texts = strings(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")))
    used = set()
    for m in (m for text in texts for m in _VAR.finditer(text)):
        if m.group("escaped"):
            continue
        name = m.group("name") or m.group("bare")
        assert m.group("op") == ":-", f"${{{name}}} in docker-compose.yml needs a :-default"
        assert name in env_example, f"{name} is not documented in deploy/.env.example"
        assert env_example[name] == m.group("arg"), (
            f"{name}: default {m.group('arg')!r} in docker-compose.yml, "
            f"{env_example[name]!r} in deploy/.env.example"
        )
        used.add(name)
    assert set(env_example) - used == set(), "deploy/.env.example documents unused variables"


def test_compose_file_has_no_version_key_and_no_secrets_in_clear() -> None:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert "version" not in data, "Compose Specification: `version` is obsolete"
    # every password comes from a variable (whose default is in deploy/.env.example)
    for name, service in data["services"].items():
        for key, value in _environment(service).items():
            if any(word in key.upper() for word in ("PASSWORD", "SECRET")):
                assert value.startswith("${"), f"{name}.{key} is not taken from a variable"


# --- services ------------------------------------------------------------------------------


def test_all_services_exist(config: dict) -> None:
    assert set(config["services"]) >= EXPECTED_SERVICES


def test_worker_can_scale(config: dict) -> None:
    worker = config["services"]["worker"]
    assert "ports" not in worker, "a host port binding stops `--scale worker=3`"
    assert "container_name" not in worker, "a container_name stops `--scale worker=3`"
    assert "build" in worker
    assert worker.get("command") == ["worker"]


def test_every_long_running_service_has_a_healthcheck(config: dict) -> None:
    for name, service in config["services"].items():
        if name in ONE_SHOT:
            assert str(service.get("restart", "no")) == "no", f"{name} is one-shot"
        elif name in NO_HTTP:
            assert not _healthcheck_enabled(service), (
                f"{name} must disable the image's /metrics healthcheck"
            )
        else:
            assert _healthcheck_enabled(service), f"{name} has no healthcheck"


def test_start_order(config: dict) -> None:
    services = config["services"]

    def deps(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in services[name].get("depends_on", {}).items()}

    assert deps("worker")["kafka-init"] == "service_completed_successfully"
    assert deps("worker")["redis"] == "service_healthy"
    assert deps("kafka-init") == {"kafka": "service_healthy"}
    assert deps("simulator")["kafka-init"] == "service_completed_successfully"
    assert deps("grafana")["prometheus"] == "service_healthy"
    for name in services:
        for dep, condition in deps(name).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if condition == "service_healthy":
                assert _healthcheck_enabled(services[dep]), f"{name} waits for {dep}'s health"
            if condition == "service_completed_successfully":
                assert dep in ONE_SHOT, f"{name} waits for long-running {dep} to exit"


def test_simulator_is_behind_a_profile(config: dict) -> None:
    simulator, worker = config["services"]["simulator"], config["services"]["worker"]
    assert simulator.get("profiles") == ["simulator"]
    assert simulator["command"] == ["simulate", "--rate", "50"]
    assert simulator["image"] == worker["image"]
    for name, service in config["services"].items():
        if name != "simulator":
            assert not service.get("profiles"), f"{name} must start by default"


def test_worker_environment_is_valid_for_settings(
    config: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import settings

    services = config["services"]
    env = _environment(services["worker"])
    unknown = {
        k
        for k in env
        if k.startswith(settings.ENV_PREFIX)
        and k[len(settings.ENV_PREFIX) :].lower() not in settings.Settings.model_fields
    }
    assert not unknown, f"not jiancha settings: {sorted(unknown)}"
    for key in list(os.environ):
        if key.startswith(settings.ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = settings.load_settings()

    kafka_env = _environment(services["kafka"])
    assert s.bootstrap_servers == ["kafka:9092"]
    assert s.kafka_security_protocol == "SASL_PLAINTEXT"
    assert s.kafka_sasl_mechanism == "SCRAM-SHA-256"
    assert s.kafka_sasl_username == kafka_env["KAFKA_USERNAME"]
    assert s.kafka_sasl_password is not None
    assert s.kafka_sasl_password.get_secret_value() == kafka_env["KAFKA_PASSWORD"]
    redis_cmd = services["redis"]["command"]
    assert s.redis_url.startswith("redis://redis:6379")
    assert s.redis_password is not None
    assert s.redis_password.get_secret_value() == redis_cmd[redis_cmd.index("--requirepass") + 1]
    assert s.web_host == "0.0.0.0", "Prometheus scrapes the worker from another container"
    topics = _environment(services["kafka-init"])["KAFKA_TOPICS"]
    assert {int(t.split(":")[1]) for t in topics.split(",")} == {s.topic_partitions}
    healthcheck = " ".join(services["worker"]["healthcheck"]["test"])
    assert f"127.0.0.1:{s.web_port}/metrics" in healthcheck


def test_redis(config: dict) -> None:
    redis = config["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    assert "--requirepass" in redis["command"]
    assert "/data" in _mounts(redis)
    assert "ports" not in redis


def test_kafka_service(config: dict) -> None:
    services = config["services"]
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:3.8.0"
    mounts = _mounts(kafka)
    assert _host_path(mounts["/opt/jiancha/kafka"]) == KAFKA_SCRIPTS
    assert "/var/lib/kafka/data" in mounts
    assert kafka["entrypoint"][-1] == "/opt/jiancha/kafka/entrypoint.sh"
    assert kafka["healthcheck"]["test"][-1] == "/opt/jiancha/kafka/healthcheck.sh"
    # the host listener is published on the loopback interface only
    assert _ports(kafka) == [("127.0.0.1", "19092", "19092")]
    init = services["kafka-init"]
    assert init["image"] == kafka["image"]
    assert init["entrypoint"][-1] == "/opt/jiancha/kafka/create-topics.sh"
    topics = dict(t.split(":") for t in _environment(init)["KAFKA_TOPICS"].split(","))
    assert {k: int(v) for k, v in topics.items()} == EXPECTED_TOPICS


def test_prometheus_service(config: dict) -> None:
    prometheus = config["services"]["prometheus"]
    mounts = _mounts(prometheus)
    assert _host_path(mounts["/etc/prometheus/prometheus.yml"]) == PROMETHEUS_YML
    assert _host_path(mounts["/etc/prometheus/rules"]) == RULES_DIR
    assert RULES_DIR.is_dir()
    assert [p[1:] for p in _ports(prometheus)] == [("9090", "9090")]


def test_grafana_service(config: dict) -> None:
    grafana = config["services"]["grafana"]
    env = _environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_SECURITY_ADMIN_PASSWORD"]
    mounts = _mounts(grafana)
    assert _host_path(mounts["/etc/grafana/provisioning"]) == GRAFANA_PROVISIONING
    assert _host_path(mounts["/var/lib/grafana/dashboards"]) == ROOT / "dashboards" / "json"
    assert (ROOT / "dashboards" / "json").is_dir()
    assert [p[1:] for p in _ports(grafana)] == [("3000", "3000")]


def test_grafana_provisioning(config: dict) -> None:
    sources = yaml.safe_load(
        (GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in config["services"]
    boards = yaml.safe_load(
        (GRAFANA_PROVISIONING / "dashboards" / "jiancha.yml").read_text(encoding="utf-8")
    )
    (provider,) = boards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] in _mounts(config["services"]["grafana"])


# --- Kafka scripts against stub Kafka tools ------------------------------------------------

_STUB_STORAGE = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$KAFKA_HOME/format.args"
echo "cluster.id=stub" > "$KAFKA_DATA_DIR/meta.properties"
"""
_STUB_START = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$KAFKA_HOME/start.args"
"""
_STUB_API_VERSIONS = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$KAFKA_HOME/api-versions.args"
"""
# kafka-topics.sh keeping topics as files "$KAFKA_HOME/topics/<name>" holding the partitions
_STUB_TOPICS = """#!/usr/bin/env bash
state="$KAFKA_HOME/topics"; mkdir -p "$state"
echo "$*" >> "$KAFKA_HOME/topics.calls"
args=("$@"); action=""; topic=""; parts=""; config=""
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --create|--describe|--alter|--list) action="${args[i]}" ;;
    --topic) topic="${args[i+1]}" ;;
    --partitions) parts="${args[i+1]}" ;;
    --command-config) config="${args[i+1]}" ;;
  esac
done
cp "$config" "$KAFKA_HOME/command-config.seen"
case "$action" in
  --create) [[ -f "$state/$topic" ]] || echo "$parts" > "$state/$topic" ;;
  --alter) echo "$parts" > "$state/$topic" ;;
  --describe)
    [[ -f "$state/$topic" ]] || { echo "Topic '$topic' does not exist" >&2; exit 1; }
    printf 'Topic: %s\\tTopicId: x\\tPartitionCount: %s\\tReplicationFactor: 1\\n' \\
      "$topic" "$(cat "$state/$topic")" ;;
esac
"""


def _stub_kafka_home(tmp_path: Path) -> Path:
    home = tmp_path / "kafka"
    (home / "bin").mkdir(parents=True)
    for name, body in {
        "kafka-storage.sh": _STUB_STORAGE,
        "kafka-server-start.sh": _STUB_START,
        "kafka-broker-api-versions.sh": _STUB_API_VERSIONS,
        "kafka-topics.sh": _STUB_TOPICS,
    }.items():
        path = home / "bin" / name
        path.write_text(body)
        path.chmod(0o755)
    return home


def _run_script(name: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    assert BASH is not None
    return subprocess.run(
        [BASH, str(KAFKA_SCRIPTS / name)],
        env={**_compose_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _kafka_env(config: dict, tmp_path: Path, home: Path) -> dict[str, str]:
    return {
        **_environment(config["services"]["kafka"]),
        "KAFKA_HOME": str(home),
        "KAFKA_DATA_DIR": str(tmp_path / "data"),
        "JIANCHA_KAFKA_CONF_DIR": str(tmp_path / "conf"),
    }


def _jaas(value: str) -> dict[str, str]:
    assert value.startswith("org.apache.kafka.common.security.scram.ScramLoginModule required ")
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


@needs_bash
def test_kafka_scripts_are_valid_bash() -> None:
    for script in sorted(KAFKA_SCRIPTS.glob("*.sh")):
        done = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{script.name}: {done.stderr}"


@needs_bash
def test_kafka_entrypoint_configures_kraft_with_scram(config: dict, tmp_path: Path) -> None:
    home = _stub_kafka_home(tmp_path)
    env = _kafka_env(config, tmp_path, home)
    done = _run_script("entrypoint.sh", env)
    assert done.returncode == 0, done.stderr

    server_properties = tmp_path / "conf" / "server.properties"
    props = _properties(server_properties)
    # KRaft, one node that is broker and controller; no ZooKeeper
    assert props["process.roles"] == "broker,controller"
    assert "zookeeper.connect" not in props
    node = props["node.id"]
    assert props["controller.quorum.voters"].startswith(f"{node}@")
    assert props["controller.listener.names"] == "CONTROLLER"
    # clients and the broker itself: SASL_PLAINTEXT with SCRAM-SHA-256
    protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
    listeners = dict(p.split("://") for p in props["listeners"].split(","))
    advertised = dict(p.split("://") for p in props["advertised.listeners"].split(","))
    assert "CONTROLLER" not in advertised
    for name in advertised:
        assert name in listeners
        assert protocols[name] == "SASL_PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-256"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-256"
    assert protocols[props["inter.broker.listener.name"]] == "SASL_PLAINTEXT"
    # the worker's bootstrap address is an advertised SASL listener
    broker_url = _environment(config["services"]["worker"])["JIANCHA_BROKER_URL"]
    assert broker_url.split("://", 1)[1] in advertised.values()
    assert advertised["EXTERNAL"] == f"localhost:{env['KAFKA_HOST_PORT']}"
    assert props["log.dirs"] == env["KAFKA_DATA_DIR"]
    admin = {"username": env["KAFKA_ADMIN_USERNAME"], "password": env["KAFKA_ADMIN_PASSWORD"]}
    for listener in advertised:
        key = f"listener.name.{listener.lower()}.scram-sha-256.sasl.jaas.config"
        assert _jaas(props[key]) == admin
    assert server_properties.stat().st_mode & 0o077 == 0, "server.properties holds a password"

    # formatted once, with both SCRAM users
    fmt = (home / "format.args").read_text().splitlines()
    assert fmt[0] == "format"
    assert fmt[fmt.index("--cluster-id") + 1] == env["KAFKA_CLUSTER_ID"]
    assert fmt[fmt.index("--config") + 1] == str(server_properties)
    scram = [fmt[i + 1] for i, arg in enumerate(fmt) if arg == "--add-scram"]
    assert sorted(scram) == sorted(
        [
            f"SCRAM-SHA-256=[name={env['KAFKA_ADMIN_USERNAME']},"
            f"password={env['KAFKA_ADMIN_PASSWORD']}]",
            f"SCRAM-SHA-256=[name={env['KAFKA_USERNAME']},password={env['KAFKA_PASSWORD']}]",
        ]
    )
    assert (home / "start.args").read_text().split() == [str(server_properties)]
    client = _properties(tmp_path / "conf" / "admin-client.properties")
    assert client["security.protocol"] == "SASL_PLAINTEXT"
    assert client["sasl.mechanism"] == "SCRAM-SHA-256"
    assert _jaas(client["sasl.jaas.config"]) == admin

    # a restart keeps the formatted log directory (and its SCRAM users)
    (home / "format.args").unlink()
    again = _run_script("entrypoint.sh", env)
    assert again.returncode == 0, again.stderr
    assert not (home / "format.args").exists()
    assert "already formatted" in again.stdout


@needs_bash
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KAFKA_PASSWORD", 'pa"ss', "may only contain"),
        ("KAFKA_ADMIN_PASSWORD", "a,b]", "may only contain"),
        ("KAFKA_PASSWORD", "", "is empty"),
        ("KAFKA_CLUSTER_ID", "short", "22 characters"),
    ],
)
def test_kafka_entrypoint_rejects_unusable_settings(
    config: dict, tmp_path: Path, variable: str, value: str, message: str
) -> None:
    home = _stub_kafka_home(tmp_path)
    env = {**_kafka_env(config, tmp_path, home), variable: value}
    done = _run_script("entrypoint.sh", env)
    assert done.returncode != 0
    assert message in done.stderr
    assert not (home / "format.args").exists()
    assert not (home / "start.args").exists()


@needs_bash
def test_kafka_healthcheck_authenticates(config: dict, tmp_path: Path) -> None:
    home = _stub_kafka_home(tmp_path)
    env = _kafka_env(config, tmp_path, home)
    assert _run_script("entrypoint.sh", env).returncode == 0
    done = _run_script("healthcheck.sh", env)
    assert done.returncode == 0, done.stderr
    args = (home / "api-versions.args").read_text().splitlines()
    assert args[args.index("--bootstrap-server") + 1] == "localhost:9092"
    assert args[args.index("--command-config") + 1] == str(
        tmp_path / "conf" / "admin-client.properties"
    )


@needs_bash
def test_kafka_init_creates_and_grows_topics(config: dict, tmp_path: Path) -> None:
    home = _stub_kafka_home(tmp_path)
    (home / "topics").mkdir()
    (home / "topics" / "complaints").write_text("4\n")  # made earlier with too few partitions
    env = {**_environment(config["services"]["kafka-init"]), "KAFKA_HOME": str(home)}
    done = _run_script("create-topics.sh", env)
    assert done.returncode == 0, done.stderr
    made = {p.name: int(p.read_text()) for p in (home / "topics").iterdir()}
    assert made == EXPECTED_TOPICS
    calls = (home / "topics.calls").read_text().splitlines()
    assert all(f"--bootstrap-server {env['KAFKA_BOOTSTRAP']}" in c for c in calls)
    assert any("--alter" in c and "complaints" in c for c in calls)
    client = _properties(home / "command-config.seen")
    assert client["sasl.mechanism"] == "SCRAM-SHA-256"
    assert _jaas(client["sasl.jaas.config"])["username"] == env["KAFKA_ADMIN_USERNAME"]
    # idempotent: a second run changes nothing
    again = _run_script("create-topics.sh", env)
    assert again.returncode == 0, again.stderr
    assert {p.name: int(p.read_text()) for p in (home / "topics").iterdir()} == EXPECTED_TOPICS


# --- Prometheus ----------------------------------------------------------------------------


def test_prometheus_config(prometheus_yml: dict, config: dict) -> None:
    assert prometheus_yml["global"]["scrape_interval"] == "5s"
    assert prometheus_yml["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    jobs = {job["job_name"]: job for job in prometheus_yml["scrape_configs"]}
    assert set(jobs) >= {"jiancha", "prometheus"}
    (sd,) = jobs["jiancha"]["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["type"] == "A"
    assert "worker" in config["services"]
    worker_port = _environment(config["services"]["worker"])["JIANCHA_WEB_PORT"]
    assert str(sd["port"]) == worker_port
    assert jobs["jiancha"].get("metrics_path", "/metrics") == "/metrics"


@needs_promtool
def test_promtool_accepts_the_config_as_mounted() -> None:
    done = subprocess.run(
        [PROMTOOL, "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_accepts_the_config_and_the_rules_in_the_repository(tmp_path: Path) -> None:
    text = PROMETHEUS_YML.read_text(encoding="utf-8")
    assert "/etc/prometheus/rules/" in text
    local = tmp_path / "prometheus.yml"
    local.write_text(text.replace("/etc/prometheus/rules/", f"{RULES_DIR}/"))
    done = subprocess.run(
        [PROMTOOL, "check", "config", str(local)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- Dockerfile and .dockerignore ----------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        lines.append((keyword.upper(), rest.strip()))
        current = ""
    return lines


def test_dockerfile() -> None:
    instructions = _dockerfile_instructions()
    args = {}
    for keyword, rest in instructions:
        if keyword == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    stages = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    assert stages
    final = instructions[stages[-1] :]
    for index in stages:
        image = instructions[index][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert image == "python:3.11-slim"
    assert any(k == "RUN" and re.search(r"pip install \.(\s|$)", r) for k, r in instructions)

    def last(keyword: str) -> str:
        found = [rest for k, rest in final if k == keyword]
        assert found, f"no {keyword} in the final stage"
        return found[-1]

    assert json.loads(last("ENTRYPOINT")) == ["jiancha"]
    assert json.loads(last("CMD")) == ["worker"]
    assert "6066" in last("EXPOSE").split()
    user = last("USER").split(":")[0]
    assert user not in {"root", "0"}
    import settings

    for keyword, rest in final:
        if keyword == "ENV":
            for key in re.findall(r"(?:^|\s)(JIANCHA_\w+)=", rest):
                field = key.removeprefix(settings.ENV_PREFIX).lower()
                assert field in settings.Settings.model_fields, f"{key} is not a jiancha setting"
    healthcheck = last("HEALTHCHECK")
    assert "urllib.request" in healthcheck and "/metrics" in healthcheck
    assert "6066" in healthcheck
    assert "curl" not in healthcheck


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, near enough: the last matching pattern wins, a match on a parent
    directory excludes everything under it, `**/` matches any depth, `!` re-includes."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.removeprefix("!").strip("/")
        tails = [pat]
        if pat.startswith("**/"):
            tails.append(pat[3:])
        matched = any(
            fnmatch.fnmatchcase("/".join(c.split("/")[j:]) if t != pat else c, t)
            for c in candidates
            for t in tails
            for j in range(len(c.split("/")) if t != pat else 1)
        )
        if matched:
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_pip_install_needs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = ["pyproject.toml", "settings.py", "README.md"] + [
        p.relative_to(ROOT).as_posix()
        for package in ("jiancha", "rules", "agents", "producers", "dashboards")
        for p in (ROOT / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    for path in needed:
        assert not _docker_ignored(path, patterns), f".dockerignore drops {path}; pip needs it"
    for path in (".venv/bin/python", ".git/HEAD", "tests/unit/x.py", "rules/__pycache__/a.pyc"):
        assert _docker_ignored(path, patterns), f"{path} would be sent to the Docker build"
