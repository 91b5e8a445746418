"""The deployment files, checked without a Docker engine.

* docker-compose.yml is validated by Debian's ``docker-compose`` 1.29 (``config -q``, skipped
  when it is not on PATH; ``.ci/install-tools`` installs it) and its structure is checked both
  on the file as written (anchors merged, ``${VAR:-default}`` resolved here) and on what
  ``docker-compose config`` resolved; both with the secrets deploy/make-secrets.sh and
  deploy/certs/make-certs.sh make (openssl, and keytool when present).
* What an attacker or a careless operator would try: compose refuses to start without each
  secret, no password has a default or sits in an environment variable or a command line,
  every published port binds 127.0.0.1 unless JIANCHA_BIND says otherwise, Grafana has no
  anonymous access, no example token is mounted.
* The Kafka and Redis scripts in deploy/ run under bash/sh against stub tools, fed with the
  environment that docker-compose.yml gives their services (secrets mapped to the generated
  files), so the KRaft, SASL_SSL, SCRAM users and ACLs the broker would get are checked for
  real (the ACLs: exactly the grants listed in deploy/kafka/acls.sh).
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
REDIS_SCRIPTS = ROOT / "deploy" / "redis"
MAKE_SECRETS = ROOT / "deploy" / "make-secrets.sh"
MAKE_CERTS = ROOT / "deploy" / "certs" / "make-certs.sh"
DEPARTMENTS_TXT = KAFKA_SCRIPTS / "departments.txt"
PROMETHEUS_YML = ROOT / "dashboards" / "prometheus" / "prometheus.yml"
RULES_DIR = ROOT / "dashboards" / "prometheus" / "rules"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"

EXPECTED_SERVICES = {
    "kafka", "kafka-init", "redis", "worker", "notifier", "prometheus", "grafana", "simulator",
}
ONE_SHOT = {"kafka-init"}  # run to completion; nothing to health-check
NO_HTTP = {"simulator"}  # long-running but serves nothing: must disable the image's check
EXPECTED_TOPICS = {
    "approval-events": 8, "approval-events.dlq": 8, "complaints": 8, "complaints.dlq": 8,
}
# the variables naming secret files: required, no default anywhere
SECRET_VARIABLES = {
    "KAFKA_ADMIN_PASSWORD_FILE", "KAFKA_WORKER_PASSWORD_FILE", "KAFKA_SIMULATOR_PASSWORD_FILE",
    "KAFKA_DEPARTMENT_PASSWORDS_FILE", "KAFKA_KEYSTORE_FILE", "KAFKA_KEYSTORE_PASSWORD_FILE",
    "KAFKA_CA_FILE", "REDIS_PASSWORD_FILE", "GRAFANA_ADMIN_PASSWORD_FILE", "DEPARTMENT_KEYS_FILE",
    "NOTIFIER_TOKENS_FILE",
}
# the passwords of the deployment before secrets came from files
OLD_DEFAULTS = ("jiancha-dev-", "change-me", "--requirepass")

DOCKER_COMPOSE = shutil.which("docker-compose")
PROMTOOL = shutil.which("promtool")
BASH = shutil.which("bash")
SH = shutil.which("sh")
OPENSSL = shutil.which("openssl")
KEYTOOL = shutil.which("keytool")

needs_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose is missing: apt-get install docker-compose (bash .ci/install-tools does)",
)
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is missing: apt-get install prometheus (bash .ci/install-tools does)",
)
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is missing: apt-get install bash")
needs_keytool = pytest.mark.skipif(
    KEYTOOL is None, reason="keytool is missing: apt-get install default-jdk-headless")


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


def _properties_text(text: str) -> dict[str, str]:
    props = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def _properties(path: Path) -> dict[str, str]:
    return _properties_text(path.read_text(encoding="utf-8"))


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return _env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The secrets of one deployment, made by the scripts an operator runs."""
    if BASH is None or OPENSSL is None:
        pytest.skip("bash or openssl is missing (they make the deployment's secrets): "
                    "apt-get install bash openssl")
    out = tmp_path_factory.mktemp("secrets")
    for script in (MAKE_SECRETS, MAKE_CERTS):
        done = subprocess.run(
            [BASH, str(script), str(out)], env=_compose_env(), capture_output=True, text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{script.name}: {done.stderr}"
    return out


@pytest.fixture(scope="module")
def deploy_env(env_example: dict[str, str], secrets_dir: Path) -> dict[str, str]:
    """deploy/.env.example with its secret files taken from ``secrets_dir``."""
    env = dict(env_example)
    for name in SECRET_VARIABLES:
        env[name] = str(secrets_dir / Path(env_example[name]).name)
    return env


@pytest.fixture(scope="module")
def deploy_env_file(deploy_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("env") / "deploy.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in deploy_env.items()))
    return path


@pytest.fixture(scope="module")
def raw_config(deploy_env: dict[str, str]) -> dict:
    return _interpolate(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")), deploy_env)


@pytest.fixture(scope="module")
def resolved_config(deploy_env_file: Path) -> dict:
    if DOCKER_COMPOSE is None:
        pytest.skip("docker-compose is missing: apt-get install docker-compose (bash .ci/install-tools does)")
    done = _docker_compose("--profile", "simulator", "config", env_file=deploy_env_file)
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


def _secret_files(config: dict, service: str) -> dict[str, Path]:
    """/run/secrets/<name> inside ``service`` -> the host file compose mounts there."""
    files = {}
    for entry in config["services"][service].get("secrets", []):
        name = entry["source"] if isinstance(entry, dict) else entry
        target = entry.get("target", name) if isinstance(entry, dict) else name
        files[f"/run/secrets/{target}"] = _host_path(config["secrets"][name]["file"])
    return files


def _service_env(config: dict, service: str) -> dict[str, str]:
    """The service's environment with its secrets' paths replaced by the host files."""
    files = _secret_files(config, service)
    return {k: str(files.get(v, v)) for k, v in _environment(config["services"][service]).items()}


def _load_service_settings(config: dict, service: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from jiancha import settings

    env = _service_env(config, service)
    kind = settings.PROCESSES[service].settings
    unknown = {
        k
        for k in env
        if k.startswith(settings.ENV_PREFIX)
        and k[len(settings.ENV_PREFIX) :].lower() not in kind.model_fields
    }
    assert not unknown, f"{service}: not jiancha settings: {sorted(unknown)}"
    for key in list(os.environ):
        if key.startswith(settings.ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return kind.load()


# --- docker-compose itself -----------------------------------------------------------------


@needs_compose
def test_docker_compose_validates_with_the_env_example() -> None:
    done = _docker_compose("config", "-q")
    assert done.returncode == 0, f"docker-compose config -q failed:\n{done.stderr}"
    assert "is not set" not in done.stderr, done.stderr


@needs_compose
def test_docker_compose_refuses_to_start_without_any_secret(tmp_path: Path) -> None:
    # An empty env file also keeps a developer's ./.env out of the test.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = _docker_compose("--profile", "simulator", "config", env_file=empty)
    assert done.returncode != 0
    assert "_FILE" in done.stderr and "deploy/.env.example" in done.stderr, done.stderr


@needs_compose
@pytest.mark.parametrize("variable", sorted(SECRET_VARIABLES))
def test_docker_compose_refuses_to_start_without_each_secret(
    tmp_path: Path, env_example: dict[str, str], variable: str
) -> None:
    lacking = tmp_path / "lacking.env"
    lacking.write_text("".join(f"{k}={v}\n" for k, v in env_example.items() if k != variable))
    for args in (("config", "-q"), ("--profile", "simulator", "config", "-q")):
        done = _docker_compose(*args, env_file=lacking)
        assert done.returncode != 0, f"compose starts without {variable}"
        assert f"set {variable}" in done.stderr, done.stderr


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_every_variable_is_documented_and_no_secret_has_a_default(
    env_example: dict[str, str],
) -> None:
    # what compose interpolates: every string of the file, comments excluded
    texts = _strings(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")))
    used, required = set(), set()
    for m in (m for text in texts for m in _VAR.finditer(text)):
        if m.group("escaped"):
            continue
        name = m.group("name") or m.group("bare")
        assert name in env_example, f"{name} is not documented in deploy/.env.example"
        used.add(name)
        if m.group("op") == ":?":
            assert f"set {name}" in m.group("arg"), f"${{{name}:?…}} must say what to set"
            required.add(name)
            continue
        assert m.group("op") == ":-", f"${{{name}}} in docker-compose.yml needs :- or :?"
        assert not re.search(r"PASSWORD|SECRET|TOKEN|KEY", name), f"{name} has a default"
        assert env_example[name] == m.group("arg"), (
            f"{name}: default {m.group('arg')!r} in docker-compose.yml, "
            f"{env_example[name]!r} in deploy/.env.example"
        )
    assert required == SECRET_VARIABLES
    assert set(env_example) - used == set(), "deploy/.env.example documents unused variables"


def test_compose_file_has_no_version_key_and_no_secrets_in_clear(raw_config: dict) -> None:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert "version" not in data, "Compose Specification: `version` is obsolete"
    # every password, key and token is a file under /run/secrets/ that the service mounts
    for name, service in raw_config["services"].items():
        mounted = _secret_files(raw_config, name)
        for key, value in _environment(service).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|KEYS?_|KEYSTORE|_CA", key):
                assert key.endswith("_FILE") or key.endswith("_CAFILE"), f"{name}.{key} in clear"
                assert value in mounted, f"{name}.{key}={value} is not one of its secrets"
        command = " ".join(_strings(service.get("command", [])))
        assert "pass" not in command.lower(), f"{name}'s command line holds a password"


def test_no_service_starts_with_a_known_password(
    deploy_env_file: Path, secrets_dir: Path, raw_config: dict
) -> None:
    rendered = [COMPOSE_FILE.read_text(encoding="utf-8"), yaml.safe_dump(raw_config)]
    if DOCKER_COMPOSE is not None:
        done = _docker_compose("--profile", "simulator", "config", env_file=deploy_env_file)
        rendered.append(done.stdout)
        example = _docker_compose("--profile", "simulator", "config")
        rendered.append(example.stdout)
    secrets = [
        line.split()[-1]
        for path in secrets_dir.glob("*.password*")
        for line in path.read_text().splitlines()
    ]
    assert len(secrets) >= 6 + len(_departments_txt())
    for text in rendered:
        for old in OLD_DEFAULTS:
            assert old not in text, f"{old!r} in the deployment"
        for secret in secrets:
            assert secret not in text, "a generated password reached the compose configuration"


def test_published_ports_bind_loopback_unless_configured(
    config: dict, deploy_env: dict[str, str]
) -> None:
    published = {name: _ports(s) for name, s in config["services"].items() if s.get("ports")}
    assert set(published) == {"kafka", "notifier", "prometheus", "grafana"}
    for name, ports in published.items():
        for host_ip, _, _ in ports:
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip or 'every interface'}"
    lan = _interpolate(
        yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")),
        {**deploy_env, "JIANCHA_BIND": "10.1.2.3"},
    )
    for name in published:
        assert {p[0] for p in _ports(lan["services"][name])} == {"10.1.2.3"}


def test_no_example_file_is_mounted(config: dict) -> None:
    for name, service in config["services"].items():
        for source in _mounts(service).values():
            assert "example" not in source and "deploy/notifier" not in source, (
                f"{name} mounts {source}"
            )
    for name, secret in config["secrets"].items():
        assert "example" not in str(secret["file"]), f"secret {name} is an example file"
    notifier = _environment(config["services"]["notifier"])
    assert notifier["JIANCHA_NOTIFIER_TOKENS_FILE"] in _secret_files(config, "notifier")
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert not re.search(r"token[:=]\s*\S", text, re.I), "a token in docker-compose.yml"


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


def _departments_txt() -> list[str]:
    codes = []
    for line in DEPARTMENTS_TXT.read_text(encoding="utf-8").splitlines():
        code = line.split("#", 1)[0].strip()
        if code:
            codes.append(code)
    return codes


def test_kafka_departments_are_the_catalogs() -> None:
    from jiancha.rules.catalog import load_catalog

    catalog = load_catalog(ROOT / "rules" / "catalog")
    assert sorted(_departments_txt()) == sorted(catalog.departments)


def test_worker_environment_is_valid_for_settings(
    config: dict, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jiancha.producers.keys import DepartmentKeys

    services = config["services"]
    s = _load_service_settings(config, "worker", monkeypatch)
    init_env = _environment(services["kafka-init"])
    assert s.bootstrap_servers == ["kafka:9092"]
    assert s.kafka_security_protocol == "SASL_SSL"
    assert s.kafka_sasl_mechanism == "SCRAM-SHA-256"
    # the worker logs in as the principal acls.sh lets read the events
    assert s.kafka_sasl_username == init_env["KAFKA_WORKER_USERNAME"]
    assert s.app_id == init_env["KAFKA_APP_ID"]
    assert s.kafka_sasl_password is not None
    assert s.kafka_sasl_password.get_secret_value() == (
        (secrets_dir / "kafka-worker.password").read_text().strip()
    )
    assert s.kafka_ssl_cafile is not None
    assert s.kafka_ssl_cafile.read_bytes() == (secrets_dir / "ca.crt").read_bytes()
    assert s.redis_url.startswith("redis://redis:6379")
    assert s.redis_password is not None
    assert s.redis_password.get_secret_value() == (secrets_dir / "redis.password").read_text().strip()
    # signing on: a key for every department
    assert s.department_keys_file is not None
    keys = DepartmentKeys.load(s.department_keys_file)
    assert keys.departments == sorted(_departments_txt())
    for code in _departments_txt():
        assert len(keys.verification_keys(code)) == 1, f"no key for {code}"
    assert s.web_host == "0.0.0.0", "Prometheus scrapes the worker from another container"
    # per-handler scores are the bureau's: the worker knows its token
    assert s.notifier_tokens_file is not None and s.notifier_tokens_file.exists()
    topics = _environment(services["kafka-init"])["KAFKA_TOPICS"]
    assert {int(t.split(":")[1]) for t in topics.split(",")} == {s.topic_partitions}
    assert {t.split(":")[0] for t in topics.split(",")} >= {
        s.events_topic, s.dlq_topic, s.complaints_topic
    }
    healthcheck = " ".join(services["worker"]["healthcheck"]["test"])
    assert f"127.0.0.1:{s.web_port}/metrics" in healthcheck


def test_simulator_environment_is_valid_for_settings(
    config: dict, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _load_service_settings(config, "simulator", monkeypatch)
    init_env = _environment(config["services"]["kafka-init"])
    assert s.kafka_security_protocol == "SASL_SSL"
    assert s.kafka_sasl_username == init_env["KAFKA_SIMULATOR_USERNAME"]
    assert s.kafka_sasl_password is not None
    assert s.kafka_sasl_password.get_secret_value() == (
        (secrets_dir / "kafka-simulator.password").read_text().strip()
    )
    assert s.department_keys_file is not None and s.kafka_ssl_cafile is not None


def test_notifier_environment_is_valid_for_settings(
    config: dict, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jiancha.notifier.tokens import load_tokens

    s = _load_service_settings(config, "notifier", monkeypatch)
    assert s.redis_password is not None
    assert s.notifier_tokens_file is not None
    tokens = load_tokens(s.notifier_tokens_file)
    bureau = tokens.authenticate((secrets_dir / "bureau.token").read_text().strip())
    assert bureau is not None and bureau.is_bureau
    assert (secrets_dir / "bureau.token").stat().st_mode & 0o077 == 0


def test_redis(config: dict) -> None:
    redis = config["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    assert "command" not in redis, "redis.conf holds the settings, not the command line"
    assert redis["entrypoint"][-1] == "/opt/jiancha/redis/start.sh"
    assert redis["healthcheck"]["test"][-1] == "/opt/jiancha/redis/healthcheck.sh"
    assert _host_path(_mounts(redis)["/opt/jiancha/redis"]) == REDIS_SCRIPTS
    assert _environment(redis)["REDIS_PASSWORD_FILE"] in _secret_files(config, "redis")
    assert "REDISCLI_AUTH" not in _environment(redis)
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
    assert init["entrypoint"][-1] == "/opt/jiancha/kafka/init.sh"
    assert _host_path(_mounts(init)["/opt/jiancha/kafka"]) == KAFKA_SCRIPTS
    init_env = _environment(init)
    assert init_env["KAFKA_DEPARTMENTS_FILE"] == "/opt/jiancha/kafka/departments.txt"
    topics = dict(t.split(":") for t in init_env["KAFKA_TOPICS"].split(","))
    assert {k: int(v) for k, v in topics.items()} == EXPECTED_TOPICS
    # the admin's password reaches only Kafka and its init job
    for name in services:
        if "/run/secrets/kafka-admin-password" in _secret_files(config, name):
            assert name in {"kafka", "kafka-init"}, f"{name} holds Kafka's admin password"


def test_prometheus_service(config: dict) -> None:
    prometheus = config["services"]["prometheus"]
    mounts = _mounts(prometheus)
    assert _host_path(mounts["/etc/prometheus/prometheus.yml"]) == PROMETHEUS_YML
    assert _host_path(mounts["/etc/prometheus/rules"]) == RULES_DIR
    assert RULES_DIR.is_dir()
    assert _ports(prometheus) == [("127.0.0.1", "9090", "9090")]


def test_grafana_service(config: dict, secrets_dir: Path) -> None:
    grafana = config["services"]["grafana"]
    env = _environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    password_file = _secret_files(config, "grafana")[env["GF_SECURITY_ADMIN_PASSWORD__FILE"]]
    assert password_file == secrets_dir / "grafana-admin.password"
    mounts = _mounts(grafana)
    assert _host_path(mounts["/etc/grafana/provisioning"]) == GRAFANA_PROVISIONING
    assert _host_path(mounts["/var/lib/grafana/dashboards"]) == ROOT / "dashboards" / "json"
    assert (ROOT / "dashboards" / "json").is_dir()
    assert _ports(grafana) == [("127.0.0.1", "3000", "3000")]


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
# kafka-configs.sh and kafka-acls.sh: each call a directory "$KAFKA_HOME/<tool>.calls/NNNN"
# holding its arguments (one a line) and copies of the files it was given
_STUB_RECORDING = """#!/usr/bin/env bash
dir="$KAFKA_HOME/$(basename "$0" .sh).calls"; mkdir -p "$dir"
n=$(find "$dir" -mindepth 1 -maxdepth 1 | wc -l)
call="$dir/$(printf %04d $((n + 1)))"; mkdir "$call"
printf '%s\\n' "$@" > "$call/args"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --command-config|--add-config-file) cp "${args[i+1]}" "$call/${args[i]#--}" ;;
  esac
done
"""


def _stub_kafka_home(tmp_path: Path) -> Path:
    home = tmp_path / "kafka"
    (home / "bin").mkdir(parents=True)
    for name, body in {
        "kafka-storage.sh": _STUB_STORAGE,
        "kafka-server-start.sh": _STUB_START,
        "kafka-broker-api-versions.sh": _STUB_API_VERSIONS,
        "kafka-topics.sh": _STUB_TOPICS,
        "kafka-configs.sh": _STUB_RECORDING,
        "kafka-acls.sh": _STUB_RECORDING,
    }.items():
        path = home / "bin" / name
        path.write_text(body)
        path.chmod(0o755)
    return home


def _calls(home: Path, tool: str) -> list[dict[str, Any]]:
    """What the recording stub kept: each call's arguments and the files it was given."""
    calls = []
    for call in sorted((home / f"{tool}.calls").glob("*")):
        files = {f"--{p.name}": p.read_text() for p in call.iterdir() if p.name != "args"}
        calls.append({"args": (call / "args").read_text().splitlines(), "files": files})
    return calls


def _run_script(name: str, env: dict[str, str], shell: str | None = BASH,
                where: Path = KAFKA_SCRIPTS) -> subprocess.CompletedProcess:
    assert shell is not None
    return subprocess.run(
        [shell, str(where / name)],
        env={**_compose_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _kafka_env(config: dict, tmp_path: Path, home: Path) -> dict[str, str]:
    return {
        **_service_env(config, "kafka"),
        "KAFKA_HOME": str(home),
        "KAFKA_DATA_DIR": str(tmp_path / "data"),
        "JIANCHA_KAFKA_CONF_DIR": str(tmp_path / "conf"),
    }


def _init_env(config: dict, home: Path) -> dict[str, str]:
    env = _service_env(config, "kafka-init")
    env["KAFKA_DEPARTMENTS_FILE"] = str(DEPARTMENTS_TXT)  # mounted from deploy/kafka/
    return {**env, "KAFKA_HOME": str(home)}


def _run_init_step(config: dict, tmp_path: Path, script: str) -> tuple[Path, dict[str, str]]:
    """Run one of kafka-init's scripts against the stub tools: (KAFKA_HOME, environment)."""
    home = _stub_kafka_home(tmp_path)
    env = _init_env(config, home)
    done = _run_script(script, env)
    assert done.returncode == 0, done.stderr
    return home, env


def _jaas(value: str) -> dict[str, str]:
    assert value.startswith("org.apache.kafka.common.security.scram.ScramLoginModule required ")
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


def _secret(path: str | Path) -> str:
    return Path(path).read_text().strip()


def _check_admin_client(props: dict[str, str], env: dict[str, str]) -> None:
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.mechanism"] == "SCRAM-SHA-256"
    assert _jaas(props["sasl.jaas.config"]) == {
        "username": env["KAFKA_ADMIN_USERNAME"],
        "password": _secret(env["KAFKA_ADMIN_PASSWORD_FILE"]),
    }
    assert props["ssl.truststore.type"] == "PEM"
    assert props["ssl.truststore.location"] == env["KAFKA_CA_FILE"]
    assert "ssl.endpoint.identification.algorithm" not in props, "host names stay verified"


@needs_bash
def test_deploy_scripts_are_valid_shell() -> None:
    scripts = [*KAFKA_SCRIPTS.glob("*.sh"), MAKE_SECRETS, MAKE_CERTS]
    for script in sorted(scripts):
        done = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{script.name}: {done.stderr}"
    if SH is not None:
        for script in sorted(REDIS_SCRIPTS.glob("*.sh")):
            done = subprocess.run([SH, "-n", str(script)], capture_output=True, text=True)
            assert done.returncode == 0, f"{script.name}: {done.stderr}"


@needs_bash
def test_kafka_entrypoint_configures_kraft_with_sasl_ssl_and_acls(
    config: dict, tmp_path: Path
) -> None:
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
    assert props["controller.quorum.voters"] == f"{node}@127.0.0.1:9093"
    assert props["controller.listener.names"] == "CONTROLLER"
    # clients and the broker itself: SASL_SSL with SCRAM-SHA-256
    protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
    listeners = dict(p.split("://") for p in props["listeners"].split(","))
    advertised = dict(p.split("://") for p in props["advertised.listeners"].split(","))
    assert "CONTROLLER" not in advertised
    # the only listener without SASL and TLS is the controller's, on the loopback interface
    assert listeners["CONTROLLER"].startswith("127.0.0.1:")
    for name in advertised:
        assert name in listeners
        assert protocols[name] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-256"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-256"
    assert protocols[props["inter.broker.listener.name"]] == "SASL_SSL"
    # TLS: the broker's keystore and the CA, from the secrets
    assert props["ssl.keystore.type"] == "PKCS12"
    assert props["ssl.keystore.location"] == env["KAFKA_KEYSTORE_FILE"]
    assert props["ssl.keystore.password"] == _secret(env["KAFKA_KEYSTORE_PASSWORD_FILE"])
    assert props["ssl.truststore.type"] == "PEM"
    assert props["ssl.truststore.location"] == env["KAFKA_CA_FILE"]
    # ACLs: nothing allowed without one, the admin (and the in-process controller) above them
    assert props["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert set(props["super.users"].split(";")) == {
        f"User:{env['KAFKA_ADMIN_USERNAME']}", "User:ANONYMOUS"
    }
    assert props["auto.create.topics.enable"] == "false"
    # the worker's bootstrap address is an advertised SASL listener
    broker_url = _environment(config["services"]["worker"])["JIANCHA_BROKER_URL"]
    assert broker_url.split("://", 1)[1] in advertised.values()
    assert advertised["EXTERNAL"] == f"{env['KAFKA_EXTERNAL_HOST']}:{env['KAFKA_HOST_PORT']}"
    assert props["log.dirs"] == env["KAFKA_DATA_DIR"]
    admin = {"username": env["KAFKA_ADMIN_USERNAME"],
             "password": _secret(env["KAFKA_ADMIN_PASSWORD_FILE"])}
    for listener in advertised:
        key = f"listener.name.{listener.lower()}.scram-sha-256.sasl.jaas.config"
        assert _jaas(props[key]) == admin
    assert server_properties.stat().st_mode & 0o077 == 0, "server.properties holds a password"

    # formatted once, with the admin's SCRAM user only (kafka-init makes the others)
    fmt = (home / "format.args").read_text().splitlines()
    assert fmt[0] == "format"
    assert fmt[fmt.index("--cluster-id") + 1] == env["KAFKA_CLUSTER_ID"]
    assert fmt[fmt.index("--config") + 1] == str(server_properties)
    scram = [fmt[i + 1] for i, arg in enumerate(fmt) if arg == "--add-scram"]
    assert scram == [
        f"SCRAM-SHA-256=[name={admin['username']},iterations=8192,password={admin['password']}]"
    ]
    assert (home / "start.args").read_text().split() == [str(server_properties)]
    client = tmp_path / "conf" / "admin-client.properties"
    _check_admin_client(_properties(client), env)
    assert client.stat().st_mode & 0o077 == 0

    # a restart keeps the formatted log directory (and its SCRAM users)
    (home / "format.args").unlink()
    again = _run_script("entrypoint.sh", env)
    assert again.returncode == 0, again.stderr
    assert not (home / "format.args").exists()
    assert "already formatted" in again.stdout


@needs_bash
@pytest.mark.parametrize(
    ("variable", "content", "message"),
    [
        ("KAFKA_ADMIN_PASSWORD_FILE", 'pa"ss', "may only contain"),
        ("KAFKA_ADMIN_PASSWORD_FILE", "a,b]", "may only contain"),
        ("KAFKA_ADMIN_PASSWORD_FILE", "", "is empty"),
        ("KAFKA_ADMIN_PASSWORD_FILE", "one\ntwo", "more than one line"),
        ("KAFKA_ADMIN_PASSWORD_FILE", None, "is not set"),
        ("KAFKA_KEYSTORE_PASSWORD_FILE", None, "is not set"),
        ("KAFKA_KEYSTORE_FILE", None, "is not set"),
        ("KAFKA_CA_FILE", None, "is not set"),
        ("KAFKA_CLUSTER_ID", "short", "22 characters"),
    ],
)
def test_kafka_entrypoint_rejects_unusable_settings(
    config: dict, tmp_path: Path, variable: str, content: str | None, message: str
) -> None:
    home = _stub_kafka_home(tmp_path)
    env = _kafka_env(config, tmp_path, home)
    if variable == "KAFKA_CLUSTER_ID":
        env[variable] = content or ""
    elif content is None:
        del env[variable]
    else:
        bad = tmp_path / "bad.secret"
        bad.write_text(content)
        env[variable] = str(bad)
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
    env = _init_env(config, home)
    done = _run_script("create-topics.sh", env)
    assert done.returncode == 0, done.stderr
    made = {p.name: int(p.read_text()) for p in (home / "topics").iterdir()}
    assert made == EXPECTED_TOPICS
    calls = (home / "topics.calls").read_text().splitlines()
    assert all(f"--bootstrap-server {env['KAFKA_BOOTSTRAP']}" in c for c in calls)
    assert any("--alter" in c and "complaints" in c for c in calls)
    _check_admin_client(_properties(home / "command-config.seen"), env)
    # idempotent: a second run changes nothing
    again = _run_script("create-topics.sh", env)
    assert again.returncode == 0, again.stderr
    assert {p.name: int(p.read_text()) for p in (home / "topics").iterdir()} == EXPECTED_TOPICS


def _department_passwords(env: dict[str, str]) -> dict[str, str]:
    lines = Path(env["KAFKA_DEPARTMENT_PASSWORDS_FILE"]).read_text().splitlines()
    return dict(line.split() for line in lines if line.strip())


@needs_bash
def test_kafka_init_gives_each_principal_its_scram_user(config: dict, tmp_path: Path) -> None:
    home, env = _run_init_step(config, tmp_path, "users.sh")
    expected = {
        env["KAFKA_WORKER_USERNAME"]: _secret(env["KAFKA_WORKER_PASSWORD_FILE"]),
        env["KAFKA_SIMULATOR_USERNAME"]: _secret(env["KAFKA_SIMULATOR_PASSWORD_FILE"]),
        **{f"dept-{code}": pw for code, pw in _department_passwords(env).items()},
    }
    assert len(expected) == 2 + len(_departments_txt())
    got = {}
    for call in _calls(home, "kafka-configs"):
        args = call["args"]
        assert args[args.index("--bootstrap-server") + 1] == env["KAFKA_BOOTSTRAP"]
        assert args[args.index("--entity-type") + 1] == "users"
        assert "--alter" in args and "--add-config" not in args
        _check_admin_client(_properties_text(call["files"]["--command-config"]), env)
        user = args[args.index("--entity-name") + 1]
        credential = call["files"]["--add-config-file"].strip()
        assert credential.startswith("SCRAM-SHA-256=iterations=8192,password=")
        got[user] = credential.rsplit("password=", 1)[1]
        # the password travels in the file, never as an argument (`ps`)
        assert all(got[user] not in arg for arg in args)
    assert got == expected


@needs_bash
@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("nosuchdept abc123\n", "nosuchdept is not in KAFKA_DEPARTMENTS_FILE"),
        ("gongan\n", "want '<department code> <password>'"),
        ('gongan pa"ss\n', "may only contain"),
    ],
)
def test_kafka_init_rejects_a_bad_department_password_line(
    config: dict, tmp_path: Path, lines: str, message: str
) -> None:
    home = _stub_kafka_home(tmp_path)
    bad = tmp_path / "departments.passwords"
    bad.write_text(lines)
    env = {**_init_env(config, home), "KAFKA_DEPARTMENT_PASSWORDS_FILE": str(bad)}
    done = _run_script("users.sh", env)
    assert done.returncode != 0
    assert message in done.stderr


def _granted(home: Path, env: dict[str, str]) -> set[tuple[str, str, str, str, str]]:
    """(principal, operation, resource type, name, pattern type) of every ACL added."""
    grants = set()
    for call in _calls(home, "kafka-acls"):
        args = call["args"]
        assert args[args.index("--bootstrap-server") + 1] == env["KAFKA_BOOTSTRAP"]
        _check_admin_client(_properties_text(call["files"]["--command-config"]), env)
        assert "--add" in args and "--remove" not in args and "--deny-principal" not in args
        assert "--producer" not in args and "--consumer" not in args, "convenience grants CREATE"
        (principal,) = [args[i + 1] for i, a in enumerate(args) if a == "--allow-principal"]
        operations = [args[i + 1] for i, a in enumerate(args) if a == "--operation"]
        resources = [(a[2:], args[i + 1]) for i, a in enumerate(args)
                     if a in ("--topic", "--group", "--cluster", "--transactional-id")]
        assert len(resources) == 1, args
        pattern = "literal"
        if "--resource-pattern-type" in args:
            pattern = args[args.index("--resource-pattern-type") + 1]
        for operation in operations:
            grants.add((principal, operation, *resources[0], pattern))
    return grants


@needs_bash
def test_kafka_acls_grant_exactly_the_listed_permissions(config: dict, tmp_path: Path) -> None:
    home, env = _run_init_step(config, tmp_path, "acls.sh")
    worker, app = f"User:{env['KAFKA_WORKER_USERNAME']}", env["KAFKA_APP_ID"]
    producers = [f"User:dept-{code}" for code in _departments_txt()]
    producers.append(f"User:{env['KAFKA_SIMULATOR_USERNAME']}")
    expected = {
        (p, "Write", "topic", topic, "literal")
        for p in producers
        for topic in ("approval-events", "complaints")
    } | {
        (worker, "Read", "topic", "approval-events", "literal"),
        (worker, "Read", "topic", "complaints", "literal"),
        (worker, "Write", "topic", "approval-events.dlq", "literal"),
        (worker, "Write", "topic", "complaints.dlq", "literal"),
        (worker, "Read", "group", app, "literal"),
        # Faust's changelogs, repartition and leader topics: <app_id>-...
        (worker, "Read", "topic", f"{app}-", "prefixed"),
        (worker, "Write", "topic", f"{app}-", "prefixed"),
        (worker, "Create", "topic", f"{app}-", "prefixed"),
        # Faust declares every topic it uses at start (they exist: this creates nothing)
        *((worker, "Create", "topic", t, "literal") for t in EXPECTED_TOPICS),
    }
    granted = _granted(home, env)
    assert granted == expected
    # nobody but the worker reads, and nobody but it writes a changelog or a dead letter
    assert {g[0] for g in granted if g[1] == "Read"} == {worker}
    assert {g[0] for g in granted if g[3] != "approval-events" and g[3] != "complaints"} == {worker}
    assert all(not g[0].endswith("*") and g[3] != "*" for g in granted)
    # idempotent: a second run asks for the same ACLs again (Kafka keeps one of each)
    shutil.rmtree(home / "kafka-acls.calls")
    again = _run_script("acls.sh", env)
    assert again.returncode == 0, again.stderr
    assert _granted(home, env) == expected


@needs_bash
def test_kafka_init_runs_topics_users_acls_in_order(config: dict, tmp_path: Path) -> None:
    home, env = _run_init_step(config, tmp_path, "init.sh")
    assert {p.name for p in (home / "topics").iterdir()} == set(EXPECTED_TOPICS)
    assert _calls(home, "kafka-configs") and _calls(home, "kafka-acls")
    # a broken step stops the job (the worker waits for its success)
    broken = {**env, "KAFKA_WORKER_PASSWORD_FILE": str(tmp_path / "missing")}
    shutil.rmtree(home / "kafka-acls.calls")
    failed = _run_script("init.sh", broken)
    assert failed.returncode != 0 and "KAFKA_WORKER_PASSWORD_FILE" in failed.stderr
    assert not _calls(home, "kafka-acls")


# --- Redis start script --------------------------------------------------------------------


@pytest.mark.skipif(SH is None, reason="sh is missing: apt-get install dash")
def test_redis_password_is_in_its_config_file_not_on_a_command_line(
    config: dict, tmp_path: Path
) -> None:
    entrypoint = tmp_path / "docker-entrypoint.sh"
    entrypoint.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$STUB_ARGS"\nenv > "$STUB_ENV"\n')
    entrypoint.chmod(0o755)
    conf = tmp_path / "run" / "redis.conf"
    env = {
        **_service_env(config, "redis"),
        "REDIS_CONF": str(conf),
        "REDIS_ENTRYPOINT": str(entrypoint),
        "STUB_ARGS": str(tmp_path / "args"),
        "STUB_ENV": str(tmp_path / "env"),
    }
    done = _run_script("start.sh", env, shell=SH, where=REDIS_SCRIPTS)
    assert done.returncode == 0, done.stderr
    password = _secret(env["REDIS_PASSWORD_FILE"])
    assert (tmp_path / "args").read_text().split() == ["redis-server", str(conf)]
    assert password not in (tmp_path / "env").read_text()
    lines = conf.read_text().splitlines()
    assert f"requirepass {password}" in lines
    assert "appendonly yes" in lines and "appendfsync always" in lines
    assert conf.stat().st_mode & 0o077 == 0

    bad = tmp_path / "bad.secret"
    bad.write_text("has space\n")
    refused = _run_script("start.sh", {**env, "REDIS_PASSWORD_FILE": str(bad)}, shell=SH,
                          where=REDIS_SCRIPTS)
    assert refused.returncode != 0 and "may only contain" in refused.stderr


def test_redis_starts_with_its_password_on_no_command_line(config: dict, tmp_path: Path) -> None:
    """The start script with a real redis-server: the password works, and neither `ps` nor
    the process's environment shows it."""
    import redis as redis_py

    from jiancha.embedded import free_port, redis_binary, wait_for_port

    if SH is None:
        pytest.skip("sh is missing: apt-get install dash")
    server = Path(redis_binary())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # the image's docker-entrypoint.sh, reduced to what it does here: run redis-server
    entrypoint = bin_dir / "docker-entrypoint.sh"
    entrypoint.write_text(f'#!/bin/sh\nshift\nexec "{server}" "$@"\n')
    entrypoint.chmod(0o755)
    (bin_dir / "redis-cli").symlink_to(server.parent / "redis-cli")
    port = free_port()
    env = {
        **_compose_env(),
        **_service_env(config, "redis"),
        "PATH": f"{bin_dir}:{_compose_env()['PATH']}",
        "REDIS_CONF": str(tmp_path / "conf" / "redis.conf"),
        "REDIS_PORT": str(port),
        "REDIS_DATA_DIR": str(tmp_path),
    }
    password = _secret(env["REDIS_PASSWORD_FILE"])
    proc = subprocess.Popen([SH, str(REDIS_SCRIPTS / "start.sh")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc=proc)
        # start.sh execs into redis-server: same process
        seen = Path(f"/proc/{proc.pid}/cmdline").read_bytes() + Path(f"/proc/{proc.pid}/environ").read_bytes()
        assert password.encode() not in seen
        with pytest.raises(redis_py.AuthenticationError):
            redis_py.Redis(port=port).ping()
        client = redis_py.Redis(port=port, password=password)
        assert client.ping()
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        health = subprocess.run([SH, str(REDIS_SCRIPTS / "healthcheck.sh")], env=env,
                                capture_output=True, text=True, timeout=30)
        assert health.returncode == 0, health.stderr
        wrong = tmp_path / "wrong.password"
        wrong.write_text("not-the-password\n")
        unhealthy = subprocess.run([SH, str(REDIS_SCRIPTS / "healthcheck.sh")],
                                   env={**env, "REDIS_PASSWORD_FILE": str(wrong)},
                                   capture_output=True, text=True, timeout=30)
        assert unhealthy.returncode != 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- secrets and certificates --------------------------------------------------------------


def test_make_secrets_keeps_what_exists(secrets_dir: Path, tmp_path: Path) -> None:
    assert BASH is not None
    copy = tmp_path / "secrets"
    shutil.copytree(secrets_dir, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    (copy / "redis.password").unlink()
    done = subprocess.run([BASH, str(MAKE_SECRETS), str(copy)], env=_compose_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    after = {p.name: p.read_bytes() for p in copy.iterdir()}
    assert set(after) == set(before)
    assert after["redis.password"] != before["redis.password"]
    assert {k: v for k, v in after.items() if k != "redis.password"} == {
        k: v for k, v in before.items() if k != "redis.password"
    }
    assert copy.stat().st_mode & 0o077 == 0, "only its owner may enter the secrets directory"
    for path in secrets_dir.glob("*.password"):
        assert re.fullmatch(r"[0-9a-f]{24,}\n", path.read_text()), path.name


def _openssl(*args: str, stdin: str | None = None) -> str:
    assert OPENSSL is not None
    done = subprocess.run([OPENSSL, *args], capture_output=True, text=True, input=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_certs_makes_a_broker_certificate_clients_verify(
    secrets_dir: Path, tmp_path: Path
) -> None:
    import socket
    import ssl
    import threading

    ca, keystore = secrets_dir / "ca.crt", secrets_dir / "kafka.keystore.p12"
    password = secrets_dir / "kafka.keystore.password"
    assert (secrets_dir / "ca.key").stat().st_mode & 0o077 == 0
    # the broker's key and certificate out of the keystore, with its password
    pem = tmp_path / "broker.pem"
    pem.write_text(_openssl("pkcs12", "-in", str(keystore), "-nodes", "-passin", f"file:{password}"))
    text = _openssl("x509", "-in", str(pem), "-noout", "-text")
    assert "DNS:kafka" in text and "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    assert "TLS Web Server Authentication" in text
    assert ": OK" in _openssl("verify", "-CAfile", str(ca), str(pem))

    # a TLS handshake as Python clients (the worker, departments) make it: CA + host name
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pem)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve(count: int) -> None:
        for _ in range(count):
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, args=(4,), daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(ca))
    for name, ok in (("localhost", True), ("kafka", True), ("kafka.evil.example", False)):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            if ok:
                with client_ctx.wrap_socket(raw, server_hostname=name) as tls:
                    tls.sendall(b"x")
            else:
                with pytest.raises(ssl.SSLCertVerificationError):
                    client_ctx.wrap_socket(raw, server_hostname=name)
    # a client without the deployment's CA refuses the broker
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ssl.create_default_context().wrap_socket(raw, server_hostname="localhost")
    thread.join(timeout=10)
    listener.close()


@needs_keytool
def test_make_certs_keystores_open_in_java(secrets_dir: Path) -> None:
    assert KEYTOOL is not None
    for store, password, kind in (
        ("kafka.keystore.p12", "kafka.keystore.password", "PrivateKeyEntry"),
        ("truststore.p12", "truststore.password", "trustedCertEntry"),
    ):
        done = subprocess.run(
            [KEYTOOL, "-list", "-keystore", str(secrets_dir / store), "-storetype", "PKCS12",
             "-storepass:file", str(secrets_dir / password)],
            capture_output=True, text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert kind in done.stdout, done.stdout


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
    assert any(k == "RUN" and re.search(r"pip install \"?\.\[engine\]\"?(\s|$)", r) for k, r in instructions)

    def last(keyword: str) -> str:
        found = [rest for k, rest in final if k == keyword]
        assert found, f"no {keyword} in the final stage"
        return found[-1]

    assert json.loads(last("ENTRYPOINT")) == ["jiancha"]
    assert json.loads(last("CMD")) == ["worker"]
    assert "6066" in last("EXPOSE").split()
    user = last("USER").split(":")[0]
    assert user not in {"root", "0"}
    from jiancha import settings

    for keyword, rest in final:
        if keyword == "ENV":
            for key in re.findall(r"(?:^|\s)(JIANCHA_\w+)=", rest):
                field = key.removeprefix(settings.ENV_PREFIX).lower()
                assert field in settings.WorkerSettings.model_fields, f"{key} is not a worker setting"
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
    needed = ["pyproject.toml", "setup.py", "settings.py", "README.md"] + [
        p.relative_to(ROOT).as_posix()
        for package in ("jiancha", "rules", "agents", "producers", "dashboards", "notifier")
        for p in (ROOT / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so"  # built here
    ]
    assert "rules/_native.c" in needed
    for path in needed:
        assert not _docker_ignored(path, patterns), f".dockerignore drops {path}; pip needs it"
    for path in (".venv/bin/python", ".git/HEAD", "tests/unit/x.py", "rules/__pycache__/a.pyc",
                 "rules/_native.cpython-311-x86_64-linux-gnu.so"):  # the image builds its own
        assert _docker_ignored(path, patterns), f"{path} would be sent to the Docker build"
