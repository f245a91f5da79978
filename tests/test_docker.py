"""deploy/docker: the image, the compose stack, Prometheus and the Grafana dashboard.

There is no Docker daemon on the machines that run these tests, so nothing is
built or started in a container. What can be checked without one is checked
against independent oracles:

* compose.yaml and compose.gpu.yaml against the Compose specification's own
  JSON schema (the one docker-compose 1.29.2 ships, from PyPI);
* every metric and label of the dashboard, the alert rules and the template
  variable against the /metrics output of a real tritonserver serving an
  exported repository in both layouts;
* the Dockerfile's pip installs against the third-party imports of the
  Python-backend code that the exporter copies into a repository;
* every file that compose mounts, and every path that Prometheus and Grafana
  read inside their containers, against the files in this folder;
* where a Prometheus binary is installed (Debian: ``apt-get install
  prometheus``), the config and rules through promtool, and every dashboard
  query, the variable and the alert rules evaluated by a real Prometheus
  scraping that tritonserver (skipped, and said so, where there is none).
"""

from __future__ import annotations

import ast
import fnmatch
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest
import yaml

from conftest import REPO_ROOT, tiny_classifier

DOCKER = REPO_ROOT / "deploy" / "docker"
BACKEND = REPO_ROOT / "exporters" / "backend"
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_GPU = DOCKER / "compose.gpu.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "tritonize.json"
PROMETHEUS = DOCKER / "prometheus" / "prometheus.yml"
SPEC_CACHE = REPO_ROOT / ".cache" / "compose-spec"
SPEC_WHEEL = "docker-compose==1.29.2"
SPEC_MEMBER = "compose/config/compose_spec.json"

# A Python model also imports what the Python backend itself provides.
PROVIDED_BY_TRITON = {"triton_python_backend_utils"}
# import name -> the distributions that provide it (else the import name itself)
DISTRIBUTIONS = {"onnxruntime": {"onnxruntime", "onnxruntime-gpu"}}
# metrics that Prometheus makes itself, not Triton
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# labels that Prometheus adds to every scraped series
TARGET_LABELS = {"job", "instance"}


# -- the Compose specification ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def compose_schema() -> dict:
    """The Compose specification's JSON schema, from the docker-compose 1.29.2 wheel (downloaded once)."""
    wheels = sorted(SPEC_CACHE.glob("docker_compose-1.29.2-*.whl"))
    if not wheels:
        SPEC_CACHE.mkdir(parents=True, exist_ok=True)
        download = Path(tempfile.mkdtemp(prefix="download-", dir=SPEC_CACHE))  # no half wheel in the cache
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             SPEC_WHEEL, "-d", str(download)],
            capture_output=True, text=True, timeout=300,
        )
        for wheel in download.glob("docker_compose-1.29.2-*.whl"):
            wheel.replace(SPEC_CACHE / wheel.name)
        shutil.rmtree(download, ignore_errors=True)
        wheels = sorted(SPEC_CACHE.glob("docker_compose-1.29.2-*.whl"))
        if result.returncode != 0 or not wheels:
            pytest.fail(
                f"could not download {SPEC_WHEEL} (it carries {SPEC_MEMBER}, the Compose schema these tests "
                f"validate against) into {SPEC_CACHE}: pip exited {result.returncode}\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}\n"
                f"Give the machine access to PyPI, or put the wheel into {SPEC_CACHE} by hand.",
                pytrace=False,
            )
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return json.loads(wheel.read(SPEC_MEMBER))


def validate_compose(schema: dict, document: dict) -> List[str]:
    import jsonschema

    # the schema says draft 2019-09 (as "...draft/2019-09/schema#", a spelling jsonschema does not look up)
    assert "draft/2019-09" in schema["$schema"], schema["$schema"]
    validator_class = jsonschema.Draft201909Validator
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
            for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.path)))]


_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}"
                       r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value, environment: Dict[str, str]):
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}`` and ``$$``."""
    if isinstance(value, dict):
        return {key: interpolate(item, environment) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environment) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = environment.get(name)
        if op in (":-", "-"):
            if current is None or (op == ":-" and current == ""):
                return arg
            return current
        if current is None:
            raise AssertionError(f"compose variable ${{{name}}} has no default: `docker compose up` with no "
                                 f"environment would substitute an empty string ({match.group(0)!r})")
        return current

    return _VARIABLE.sub(substitute, value)


def load_compose(path: Path) -> dict:
    return interpolate(yaml.safe_load(path.read_text()), {})


def merge_compose(base: dict, override: dict) -> dict:
    """``docker compose -f base -f override`` for these files: mappings merge, a sequence of the override
    replaces the base's (compose does so for ``command``, the only sequence compose.gpu.yaml sets)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_compose(merged[key], value)
        else:
            merged[key] = value
    return merged


def bind_mounts(service: dict) -> List[Tuple[str, str]]:
    """(source, target) of every bind mount of a service, short or long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.split(":")[0]
            if source.startswith((".", "/", "~")):
                mounts.append((source, target))
        elif volume.get("type") == "bind":
            mounts.append((volume["source"], volume["target"]))
    return mounts


def host_path(source: str) -> Path:
    path = Path(source).expanduser()
    return path if path.is_absolute() else (DOCKER / path).resolve()


def resolve_in_container(service: dict, container_path: str) -> Optional[Path]:
    """The host file behind ``container_path`` through the service's bind mounts, if any."""
    path = PurePosixPath(container_path)
    best: Optional[Tuple[int, Path]] = None
    for source, target in bind_mounts(service):
        target_path = PurePosixPath(target)
        if path == target_path or target_path in path.parents:
            relative = path.relative_to(target_path)
            if best is None or len(target_path.parts) > best[0]:
                best = (len(target_path.parts), host_path(source) / relative)
    return best[1] if best else None


def container_ports(service: dict) -> Set[int]:
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).split(":")[-1].split("/")[0]))
    return ports


@pytest.mark.parametrize("files", [("compose.yaml",), ("compose.gpu.yaml",), ("compose.yaml", "compose.gpu.yaml")],
                         ids=["compose", "gpu-override", "compose+gpu"])
def test_compose_files_follow_the_compose_specification(compose_schema, files):
    document: dict = {}
    for name in files:
        document = merge_compose(document, load_compose(DOCKER / name))
    errors = validate_compose(compose_schema, document)
    assert not errors, f"{' + '.join(files)} breaks the Compose specification:\n" + "\n".join(errors)


def test_the_schema_check_refuses_what_the_specification_does_not_know(compose_schema):
    """The validator is not a rubber stamp: a key the 2021 specification lacks, a wrong type, a bad mount."""
    compose = load_compose(COMPOSE)
    unknown = merge_compose(compose, {"services": {"triton": {"gpus": "all"}}})  # newer than this schema
    wrong_type = merge_compose(compose, {"services": {"triton": {"shm_size": ["1gb"]}}})
    no_type = merge_compose(compose, {"services": {"grafana": {"volumes": [{"source": ".", "target": "/x"}]}}})
    for broken in (unknown, wrong_type, no_type):
        assert validate_compose(compose_schema, broken)


def test_the_default_stack_runs_on_a_cpu_host_and_the_override_reserves_gpus():
    compose = load_compose(COMPOSE)
    triton = compose["services"]["triton"]
    assert "deploy" not in triton and "runtime" not in triton and "devices" not in triton, (
        "compose.yaml must start on a host without GPUs: GPU reservations belong in compose.gpu.yaml")
    assert "--allow-gpu-metrics=false" in triton["command"]

    merged = merge_compose(compose, load_compose(COMPOSE_GPU))["services"]["triton"]
    devices = merged["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), devices
    assert "--allow-gpu-metrics=true" in merged["command"]
    # the override changes only what a GPU needs: the rest of the command is the CPU one
    assert [a for a in merged["command"] if "gpu-metrics" not in a] == [
        a for a in triton["command"] if "gpu-metrics" not in a]


def test_compose_services_ports_and_model_repository():
    compose = load_compose(COMPOSE)
    services = compose["services"]
    assert {"triton", "prometheus", "grafana"} <= set(services)
    triton = services["triton"]
    assert container_ports(triton) >= {8000, 8001, 8002}
    build = triton["build"]
    context = host_path(build["context"])
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    assert context == REPO_ROOT  # the Dockerfile's COPY paths are relative to the repository root
    # the model repository: a host folder from MODEL_REPOSITORY (a default given) mounted where the server reads
    raw_sources = [v["source"] for v in yaml.safe_load(COMPOSE.read_text())["services"]["triton"]["volumes"]
                   if isinstance(v, dict)]
    assert any(s.startswith("${MODEL_REPOSITORY:-") for s in raw_sources), raw_sources
    mounts = dict((target, source) for source, target in bind_mounts(triton))
    assert host_path(mounts["/models"]) == REPO_ROOT / "model_repository"
    assert "--model-repository=/models" in triton["command"]
    assert container_ports(services["prometheus"]) == {9090}
    assert container_ports(services["grafana"]) == {3000}


def test_every_bind_mount_source_exists():
    for name in ("compose.yaml", "compose.gpu.yaml"):
        compose = load_compose(DOCKER / name)
        for service_name, service in compose["services"].items():
            for source, target in bind_mounts(service):
                assert host_path(source).exists(), (
                    f"{name}: service {service_name} mounts {source} (= {host_path(source)}) at {target}, "
                    "and that path does not exist in the repository")


# -- Prometheus and Grafana: what reads what, inside the containers --------------------------------
def test_prometheus_scrapes_triton_metrics_and_loads_its_rules():
    compose = load_compose(COMPOSE)
    prometheus_service = compose["services"]["prometheus"]
    # the image reads /etc/prometheus/prometheus.yml: it must be this file
    assert resolve_in_container(prometheus_service, "/etc/prometheus/prometheus.yml") == PROMETHEUS
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"]), "job names must be unique"
    triton_jobs = [job for job in jobs.values()
                   if any("triton:8002" in static.get("targets", []) for static in job.get("static_configs", []))]
    assert triton_jobs, f"no job scrapes triton:8002: {config['scrape_configs']}"
    assert triton_jobs[0].get("metrics_path", "/metrics") == "/metrics"
    assert triton_jobs[0].get("scheme", "http") == "http"
    assert 8002 in container_ports(compose["services"]["triton"])  # and the service answers there
    # the alert rules' job selector names the job that exists
    for rule_file in config.get("rule_files", []):
        path = resolve_in_container(prometheus_service, rule_file)
        assert path is not None and path.is_file(), f"rule file {rule_file} is not mounted from the repository"
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                assert rule.get("alert") or rule.get("record"), rule
                assert rule["expr"].strip(), rule
                for job in re.findall(r'job="([^"]+)"', rule["expr"]):
                    assert job in jobs, (rule["alert"], job)


def alert_rules() -> List[dict]:
    config = yaml.safe_load(PROMETHEUS.read_text())
    service = load_compose(COMPOSE)["services"]["prometheus"]
    rules = []
    for rule_file in config.get("rule_files", []):
        for group in yaml.safe_load(resolve_in_container(service, rule_file).read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def test_grafana_provisioning_finds_prometheus_and_the_dashboard():
    compose = load_compose(COMPOSE)
    grafana = compose["services"]["grafana"]
    provisioning = resolve_in_container(grafana, "/etc/grafana/provisioning")
    assert provisioning is not None and provisioning.is_dir()
    sources = [source for path in sorted((provisioning / "datasources").glob("*.y*ml"))
               for source in yaml.safe_load(path.read_text())["datasources"]]
    prometheus = [s for s in sources if s["type"] == "prometheus"]
    assert len(prometheus) == 1, sources
    assert prometheus[0]["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"] and 9090 in container_ports(compose["services"]["prometheus"])
    providers = [p for path in sorted((provisioning / "dashboards").glob("*.y*ml"))
                 for p in yaml.safe_load(path.read_text())["providers"]]
    assert providers, "no dashboard provider"
    folders = [resolve_in_container(grafana, p["options"]["path"]) for p in providers]
    assert DASHBOARD.parent in folders, f"no provider reads the folder that holds {DASHBOARD.name}: {folders}"
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert resolve_in_container(grafana, home) == DASHBOARD
    # every panel and the variable ask the provisioned datasource
    uid = prometheus[0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    for item in [*panels(dashboard), *dashboard["templating"]["list"]]:
        for source in [item.get("datasource"), *[t.get("datasource") for t in item.get("targets", [])]]:
            if source is not None:
                assert source == {"type": "prometheus", "uid": uid}, (item.get("title") or item["name"], source)


# -- the dashboard ----------------------------------------------------------------------------------
def panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def dashboard_exprs() -> List[Tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in panels(dashboard) if panel["type"] != "row"
            for target in panel["targets"]]


REQUIRED_METRICS = {
    "nv_inference_queue_duration_us", "nv_inference_request_success", "nv_inference_request_failure",
    "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us", "nv_inference_count", "nv_inference_exec_count",
}


def test_dashboard_panels_queries_and_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, (panel["title"], grid)
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        assert targets and all(t.get("expr", "").strip() for t in targets), f"{panel['title']}: a target has no expr"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
    used = set()
    for title, expr in dashboard_exprs():
        names = promql_selectors(expr)
        used |= set(names)
        # every per-model series follows the `model` variable
        for name in names:
            if name.startswith(("nv_inference_", "tritonize_encoder_")):
                assert re.search(re.escape(name) + r'\{[^}]*model=~"\$model"', expr), (title, name)
    assert REQUIRED_METRICS <= used, REQUIRED_METRICS - used
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "model"]
    assert variable["type"] == "query"
    if "definition" in variable:  # what Grafana shows beside the query it runs
        assert variable["definition"] == variable_query(variable), variable
    assert re.fullmatch(r"label_values\(\s*nv_inference_request_success\s*,\s*model\s*\)", variable_query(variable))
    assert variable["multi"] and variable["includeAll"]


def variable_query(variable: dict) -> str:
    query = variable["query"]
    return query["query"] if isinstance(query, dict) else query


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan", "atan2"}


def promql_selectors(expr: str) -> Dict[str, Set[str]]:
    """The metric names of a PromQL expression, each with the labels its matchers and groupings name."""
    matchers: Dict[str, Set[str]] = defaultdict(set)
    text = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors: [5m], [$__rate_interval]
    grouping = set()
    for clause in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        grouping |= {label.strip() for label in clause.split(",") if label.strip()}
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for name, inside in re.findall(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}", text):
        matchers[name] |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", _STRING.sub('""', inside)))
    text = _STRING.sub(" ", re.sub(r"\{[^}]*\}", " ", text))
    names = {}
    for match in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])", text):
        name = match.group(1)
        if name in _KEYWORDS or re.match(r"\s*\(", text[match.end():]):
            continue  # a function or an operator
        names[name] = matchers.get(name, set())
    for name in names:
        names[name] = names[name] | grouping
    return names


def test_the_promql_reader_finds_metrics_and_labels():
    """promql_selectors, the tool of the metric checks below, on expressions with a known answer."""
    got = promql_selectors('sum by (model, reason) (rate(nv_x_total{model=~"$model",v!="1"}[$__rate_interval]))\n'
                           "/ ignoring(reason) max(nv_y) / 1e3 > bool 0.5")
    assert got == {"nv_x_total": {"model", "v", "reason"}, "nv_y": {"model", "reason"}}
    assert promql_selectors('up{job="triton"} == 0') == {"up": {"job"}}
    assert promql_selectors("histogram_quantile(0.9, rate(a_bucket[5m]))") == {"a_bucket": set()}
    assert promql_selectors('label_replace(nv_z, "dst", "$1", "src", "(.*)") + on(model) nv_w') == {
        "nv_z": {"model"}, "nv_w": {"model"}}


# -- a real tritonserver's /metrics: the oracle for every metric and label ---------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A tiny classifier exported twice, in the steps layout and in the fused one."""
    from tritonize.exporters.export import ExportOptions, export

    repository = tmp_path_factory.mktemp("docker") / "model_repository"
    checkpoint = tiny_classifier("bert-single")
    for name, layout in (("dash-steps", "steps"), ("dash-fused", "fused")):
        export(ExportOptions(str(checkpoint), "text-classification", name, repository, layout=layout),
               stream=io.StringIO())
    return repository


def served_models(repository: Path) -> Set[str]:
    return {path.parent.name for path in repository.glob("*/config.pbtxt")}


def parse_metrics(text: str) -> Dict[str, List[Dict[str, str]]]:
    """Prometheus text format: metric name -> the label sets of its samples."""
    samples: Dict[str, List[Dict[str, str]]] = defaultdict(list)
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            samples.setdefault(line.split()[2], [])
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([A-Za-z_:][\w:]*)(\{(.*)\})?\s+\S+", line)
        assert match, f"not a sample line: {line!r}"
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        samples[match.group(1)].append(labels)
    return samples


ENSEMBLES = ("dash-steps", "dash-fused")
TEXTS = ["a first text", "and a second, longer one"]


@pytest.fixture(scope="module")
def triton(exported) -> Iterator[object]:
    """A real tritonserver serving ``exported``, which has answered every ensemble once."""
    from tritonize.client import Client
    from tritonize.deploy import LocalServer, free_port

    with LocalServer(exported, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                     ready_timeout=300) as server:
        with Client(server.grpc_url) as client:
            for name in ENSEMBLES:
                assert client.classify(name, TEXTS)
        yield server


def read_metrics(url: str) -> Dict[str, List[Dict[str, str]]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse_metrics(response.read().decode())


@pytest.fixture(scope="module")
def triton_metrics(triton, exported) -> Dict[str, List[Dict[str, str]]]:
    """/metrics of that server, once every model of the repository shows its requests."""
    models = served_models(exported)
    deadline = time.monotonic() + 20
    while True:  # a counter can move a moment after the response left
        metrics = read_metrics(triton.metrics_url)
        answered = {s["model"] for s in metrics.get("nv_inference_request_success", [])}
        if (answered >= models and metrics.get("tritonize_encoder_runs_total")) or time.monotonic() > deadline:
            return metrics
        time.sleep(0.2)


def check_against_metrics(where: str, expr: str, metrics: Dict[str, List[Dict[str, str]]]) -> None:
    for name, labels in promql_selectors(expr).items():
        if name in PROMETHEUS_SYNTHETIC:
            continue
        assert name in metrics, f"{where}: metric {name!r} is not in tritonserver's /metrics output"
        present = set().union(*metrics[name]) | TARGET_LABELS
        if any("instance" in labels for labels in metrics[name]):
            present.add("exported_instance")  # Prometheus renames a scraped `instance` so
        missing = labels - present
        assert not missing, f"{where}: {name} has no label {sorted(missing)} (its labels: {sorted(present)})"


@pytest.mark.server
def test_every_dashboard_metric_and_label_is_served_by_tritonserver(triton_metrics):
    exprs = dashboard_exprs()
    assert exprs
    for title, expr in exprs:
        check_against_metrics(f"panel {title!r}", expr, triton_metrics)


@pytest.mark.server
def test_every_alert_metric_and_label_is_served_by_tritonserver(triton_metrics):
    rules = alert_rules()
    assert rules
    for rule in rules:
        check_against_metrics(f"alert {rule['alert']!r}", rule["expr"], triton_metrics)


@pytest.mark.server
def test_the_model_variable_lists_every_model_and_step(triton_metrics, exported):
    """label_values(nv_inference_request_success, model): each ensemble and each of its steps."""
    (variable,) = [v for v in json.loads(DASHBOARD.read_text())["templating"]["list"] if v["name"] == "model"]
    metric, label = re.fullmatch(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", variable_query(variable)).groups()
    values = {labels[label] for labels in triton_metrics[metric] if label in labels}
    expected = {"dash-steps", "dash-steps_tokenizer", "dash-steps_encoder", "dash-steps_postprocess",
                "dash-fused", "dash-fused_pipeline"}
    assert served_models(exported) == expected  # what the exporter wrote
    assert values == expected


# -- a real Prometheus, where one is installed: every query of the dashboard and the rules, evaluated ---
PROMETHEUS_BIN, PROMTOOL_BIN = shutil.which("prometheus"), shutil.which("promtool")
NO_PROMETHEUS = ("no prometheus/promtool on PATH (Debian: apt-get install prometheus); the dashboard's metrics "
                 "and labels are still checked against tritonserver's /metrics above")


def host_prometheus_config(directory: Path, target: str, scrape_interval: str = "1s") -> Path:
    """prometheus.yml as the container reads it, for a Prometheus on this host: the rule files from the
    repository (where compose mounts them from), ``triton:8002`` replaced by ``target``."""
    service = load_compose(COMPOSE)["services"]["prometheus"]
    config = yaml.safe_load(PROMETHEUS.read_text())
    config["rule_files"] = [str(resolve_in_container(service, path)) for path in config.get("rule_files", [])]
    config.setdefault("global", {}).update(scrape_interval=scrape_interval, evaluation_interval=scrape_interval)
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            static["targets"] = [target if t == "triton:8002" else t for t in static["targets"]]
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.skipif(PROMTOOL_BIN is None, reason=NO_PROMETHEUS)
def test_promtool_accepts_the_prometheus_config_and_the_alert_rules(tmp_path):
    config = host_prometheus_config(tmp_path, "127.0.0.1:8002")
    result = subprocess.run([PROMTOOL_BIN, "check", "config", str(config)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rules found" in result.stdout, result.stdout


@pytest.fixture(scope="module")
def prometheus(triton, tmp_path_factory) -> Iterator[str]:
    """A real Prometheus scraping the real tritonserver every second, with the alert rules loaded."""
    if PROMETHEUS_BIN is None:
        pytest.skip(NO_PROMETHEUS)
    from tritonize.deploy import free_port

    directory = tmp_path_factory.mktemp("prometheus")
    config = host_prometheus_config(directory, f"127.0.0.1:{triton.metrics_port}")
    address = f"127.0.0.1:{free_port()}"
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [PROMETHEUS_BIN, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address={address}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://{address}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, (directory / "prometheus.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Prometheus not ready in 60 s:\n" + (
                directory / "prometheus.log").read_text()[-3000:]
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def prometheus_api(url: str, path: str, **params: str) -> object:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{query}", timeout=10) as response:
        body = json.loads(response.read().decode())
    assert body["status"] == "success", body
    return body["data"]


def grafana_expr(expr: str, rate_interval: str = "10s") -> str:
    """What Grafana sends for the variable at All (its allValue) and for $__rate_interval."""
    return expr.replace("$model", ".*").replace("$__rate_interval", rate_interval)


@pytest.mark.server
def test_prometheus_answers_every_dashboard_query_from_a_real_scrape(triton, prometheus, exported):
    from tritonize.client import Client

    def until(condition, seconds: float, what: str):
        deadline = time.monotonic() + seconds
        while True:
            value = condition()
            if value or time.monotonic() > deadline:
                assert value, f"{what} within {seconds:.0f} s"
                return value
            time.sleep(0.25)

    # its first scrape comes a few seconds after start (the discovery manager's first update)
    until(lambda: [s for s in prometheus_api(prometheus, "query", query='up{job="triton"}')["result"]
                   if s["value"][1] == "1"], 30, "Prometheus did not scrape the job triton")
    # then some seconds of traffic while it scrapes every second, so that every rate has points
    with Client(triton.grpc_url) as client:
        stop = time.monotonic() + 4
        while time.monotonic() < stop:
            for name in ENSEMBLES:
                client.classify(name, TEXTS)
            time.sleep(0.05)
    rate = grafana_expr('sum by (model) (rate(nv_inference_request_success{model=~"$model"}[$__rate_interval])) > 0')
    until(lambda: len(prometheus_api(prometheus, "query", query=rate)["result"]) == len(served_models(exported)),
          15, "not every model shows a request rate")

    for title, expr in dashboard_exprs():
        result = prometheus_api(prometheus, "query", query=grafana_expr(expr))["result"]
        assert result, f"panel {title!r}: no series for\n{grafana_expr(expr)}"
        if "model" in expr:
            models = {series["metric"].get("model") for series in result}
            assert models <= served_models(exported), (title, models)
    # the `model` variable, as Grafana's label_values asks for it
    (variable,) = [v for v in json.loads(DASHBOARD.read_text())["templating"]["list"] if v["name"] == "model"]
    metric, label = re.fullmatch(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", variable_query(variable)).groups()
    values = prometheus_api(prometheus, f"label/{label}/values", **{"match[]": metric})
    assert set(values) == served_models(exported)
    # every alert rule loaded and evaluated without an error
    rules = until(lambda: [r for g in prometheus_api(prometheus, "rules")["groups"] for r in g["rules"]
                           if r.get("health") == "ok"] or None, 15, "no alert rule evaluated")
    rules = [r for g in prometheus_api(prometheus, "rules")["groups"] for r in g["rules"]]
    assert sorted(rule["name"] for rule in rules) == sorted(rule["alert"] for rule in alert_rules())
    assert all(rule.get("health") == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]
    firing = [rule["name"] for rule in rules if rule.get("state") != "inactive"]
    assert not firing, f"alerts fire on a healthy server: {firing}"


# -- the Dockerfile -----------------------------------------------------------------------------------
def dockerfile_instructions(path: Path) -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_args(instructions: List[Tuple[str, str]]) -> Dict[str, str]:
    args = {}
    for keyword, arguments in instructions:
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            args[name.strip()] = default.strip().strip('"')
    return args


def expand(text: str, args: Dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def shell_commands(script: str) -> List[List[str]]:
    """The simple commands of a shell line: words split as sh does, at ``&&``, ``||``, ``;``, ``|`` and parentheses."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: List[List[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|", "(", ")", "&"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def pip_requirements(instructions: List[Tuple[str, str]], args: Dict[str, str]) -> List[str]:
    """The requirement strings of every `pip install` in a RUN (with the ARG defaults)."""
    takes_value = {"-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f", "--find-links",
                   "--target", "-t", "--prefix", "--root", "--platform", "--python-version", "--implementation",
                   "--abi", "--trusted-host", "--cache-dir", "--progress-bar"}
    requirements = []
    for keyword, arguments in instructions:
        if keyword != "RUN":
            continue
        for words in shell_commands(arguments):
            if "install" not in words:
                continue
            before = words[:words.index("install")]
            if not any(re.fullmatch(r"(.*/)?pip(3(\.\d+)?)?", word) for word in before):
                continue  # apt-get install and the like
            skip = False
            for word in words[words.index("install") + 1:]:
                assert word not in ("-r", "--requirement"), (
                    "a requirements file in the Dockerfile: teach pip_requirements to read it")
                if skip:
                    skip = False
                elif word.startswith("-"):
                    skip = word in takes_value
                elif not expand(word, args).startswith(("/", "./")):  # a local project is not a requirement
                    requirements.append(expand(word, args))
    return requirements


def stdlib_modules() -> Set[str]:
    names = getattr(sys, "stdlib_module_names", None)  # Python 3.10+
    if names is not None:
        return set(names)
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = {p.stem for p in stdlib.glob("*.py")} | {p.name for p in stdlib.iterdir() if (p / "__init__.py").exists()}
    dynload = stdlib / "lib-dynload"
    found |= {p.name.split(".")[0] for p in dynload.glob("*.so")} if dynload.is_dir() else set()
    return found | set(sys.builtin_module_names)


STDLIB = stdlib_modules()


def third_party_imports(paths: List[Path], beside: Set[str] = frozenset()) -> Dict[str, Set[str]]:
    """Top-level module -> the files that import it, for every absolute import that is not the stdlib's,
    nor one of ``paths`` or ``beside`` (modules that sit next to them: the steps import each other)."""
    local = {path.stem for path in paths} | set(beside)
    found: Dict[str, Set[str]] = defaultdict(set)
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in STDLIB and top not in local and top not in PROVIDED_BY_TRITON:
                    found[top].add(path.name)
    return found


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def not_installed(imports: Dict[str, Set[str]], installed: Set[str]) -> List[str]:
    """A line for each imported module that no installed distribution provides."""
    problems = []
    for module, files in sorted(imports.items()):
        candidates = {normalized(d) for d in DISTRIBUTIONS.get(module, {module})}
        if not candidates & installed:
            problems.append(f"{', '.join(sorted(files))} import {module!r}, which the image does not install: "
                            f"add one of {sorted(candidates)} to the pip install of deploy/docker/Dockerfile")
    return problems


def step_sources() -> List[Path]:
    """The Python-backend code that the exporter copies into a repository (not the package's own copier)."""
    return sorted(p for p in BACKEND.glob("*.py") if p.name != "__init__.py")


def image_packages() -> Dict[str, "Requirement"]:  # noqa: F821  (packaging's, imported lazily)
    from packaging.requirements import Requirement

    instructions = dockerfile_instructions(DOCKERFILE)
    requirements = [Requirement(r) for r in pip_requirements(instructions, dockerfile_args(instructions))]
    return {normalized(r.name): r for r in requirements}


def test_dockerfile_builds_on_the_ngc_tritonserver_image_with_what_the_steps_import(exported):
    instructions = dockerfile_instructions(DOCKERFILE)
    args = dockerfile_args(instructions)
    base = [arguments for keyword, arguments in instructions if keyword == "FROM"][0]  # the others build on it
    assert "${TRITON_TAG}" in base, f"the tag of the base image must be a build ARG: FROM {base}"
    image, _, tag = expand(base.split()[0], args).rpartition(":")
    assert image == "nvcr.io/nvidia/tritonserver", base
    assert re.fullmatch(r"\d\d\.\d\d-py3", tag), f"TRITON_TAG default {tag!r}: an NGC release such as 24.10-py3"

    installed = image_packages()
    # what the Python models import: the source of the steps, and the files of a real export (where the
    # steps sit side by side under the names the writer gives them)
    copied_as = {path.stem for path in exported.glob("*/*/*.py")}  # model.py, tokenizer_step.py, ...
    source = third_party_imports(step_sources(), beside=copied_as)
    assert {"numpy", "onnxruntime", "tokenizers"} <= set(source), source  # the reader reads
    problems = not_installed(source, set(installed))
    for version_dir in {path.parent for path in exported.glob("*/*/*.py")}:
        problems += not_installed(third_party_imports(sorted(version_dir.glob("*.py"))), set(installed))
    assert not problems, "\n".join(sorted(set(problems)))
    # the Python-backend stub of Triton 2.51 needs numpy<2 (DESIGN.md)
    assert below_2(installed["numpy"]), f"{installed['numpy']}: the image must keep numpy below 2"
    # the image's python3 (3.10 in the 24.xx images, 3.12 from 25.01 on) must read every step
    python = (3, 10) if int(tag[:2]) <= 24 else (3, 12)
    for path in [*step_sources(), *exported.glob("*/*/*.py")]:
        ast.parse(path.read_text(), str(path), feature_version=python)


def below_2(requirement) -> bool:
    """Whether a requirement admits no version 2 or later (an upper bound, a 1.x pin or ~=1.x)."""
    from packaging.version import Version

    for spec in requirement.specifier:
        version = spec.version.rstrip(".*")
        if spec.operator == "<" and Version(version) <= Version("2"):
            return True
        if spec.operator == "<=" and Version(version) < Version("2"):
            return True
        if spec.operator in ("==", "===", "~=") and Version(version).major < 2:
            return True
    return False


def test_the_numpy_bound_check():
    from packaging.requirements import Requirement

    assert [below_2(Requirement(r)) for r in ("numpy==1.26.4", "numpy>=1.22,<2", "numpy~=1.26", "numpy==1.*",
                                              "numpy<=1.26.4")] == [True] * 5
    assert [below_2(Requirement(r)) for r in ("numpy", "numpy>=1.22", "numpy==2.1.0", "numpy<3", "numpy!=2.0.0",
                                              "numpy~=2.0")] == [False] * 6


def test_a_step_that_imports_a_package_the_image_lacks_is_caught(tmp_path):
    """The check above on a copy of the steps where one step imports one package more."""
    for path in step_sources():
        (tmp_path / path.name).write_text(path.read_text())
    step = tmp_path / "tokenizer.py"
    step.write_text("import scipy.special\nfrom sklearn import metrics\n" + step.read_text())
    installed = set(image_packages())
    beside = {"encoder_step", "tokenizer_step", "postprocess_step"}  # what the fused layout imports
    assert not not_installed(third_party_imports(step_sources(), beside), installed)
    problems = not_installed(third_party_imports(sorted(tmp_path.glob("*.py")), beside), installed)
    assert [p.split(" import ")[1].split(",")[0] for p in problems] == ["'scipy'", "'sklearn'"], problems
    assert all(p.startswith("tokenizer.py import") for p in problems), problems


def test_dockerfile_serves_models_from_the_mounted_or_baked_repository():
    instructions = dockerfile_instructions(DOCKERFILE)
    args = dockerfile_args(instructions)
    keywords = [k for k, _ in instructions]
    assert keywords.count("CMD") == 1 and keywords.count("HEALTHCHECK") == 1
    (cmd,) = [a for k, a in instructions if k == "CMD"]
    command = json.loads(cmd)  # exec form: tritonserver is PID 1's child and gets the signals
    assert command[0] == "tritonserver" and "--model-repository=/models" in command
    (healthcheck,) = [a for k, a in instructions if k == "HEALTHCHECK"]
    assert "/v2/health/ready" in healthcheck and ":8000/" in healthcheck
    exposed = {int(p) for k, a in instructions if k == "EXPOSE" for p in a.split()}
    assert exposed == {8000, 8001, 8002}
    # the optional baked-in repository: COPY ${MODEL_REPOSITORY}/ /models/, default a folder that exists
    copies = [a.split() for k, a in instructions if k == "COPY"]
    assert [c for c in copies if c[-1].rstrip("/") == "/models" and "${MODEL_REPOSITORY}" in c[0]], copies
    assert (REPO_ROOT / args["MODEL_REPOSITORY"]).is_dir()
    # the context is the repository root: the .dockerignore beside the Dockerfile keeps the repository paths in
    ignore = [line.strip() for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    for kept in (args["MODEL_REPOSITORY"] + "/README.md", "model_repository/sentiment/config.pbtxt"):
        assert not any(fnmatch.fnmatch(kept, pattern) or kept.startswith(pattern.rstrip("/") + "/")
                       for pattern in ignore if not pattern.startswith("!")), kept
    assert any(fnmatch.fnmatch("model_repository/m/1/__pycache__", p) for p in ignore)
