"""deploy/kubernetes and `tritonize deploy kubernetes`.

Every tree is rendered by the real ``kubectl kustomize`` (no cluster), and every rendered core object is
validated against the Kubernetes OpenAPI schemas of the release below, strictly (an unknown field fails).
Then the objects are checked against each other, as the cluster would use them: probes against the
container's ports and tritonserver's args, the Service against the Prometheus annotations and scrape job
(whose relabelling is replayed on the rendered pod), the HPA against the Deployment it scales and the
prometheus-adapter rule that serves its metric.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML reads the rendered manifests (dev extra)")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate checks the manifests against the Kubernetes schemas (dev extra)")

from tritonize.deploy import k8s  # noqa: E402

K8S_VERSION = "1.30.0"   # a release kubernetes-validate bundles schemas of
MANIFESTS = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
CRD_GROUPS = {"serving.kserve.io", "monitoring.coreos.com"}   # not in the core schemas: checked by hand
SECRET = "model-store-keys"


# -- helpers --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not on PATH: these tests render the manifests with `kubectl kustomize` "
                    "(any kubectl >= 1.27; no cluster needed)")
    return path


def render(kubectl: str, directory: Path) -> List[Dict[str, Any]]:
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tritonize.cli", *args], capture_output=True, text=True,
                          timeout=120)


def deploy(out: Path, *args: str) -> subprocess.CompletedProcess:
    result = cli("deploy", "kubernetes", "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    return result


def one(objects: List[Dict[str, Any]], kind: str) -> Dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def the_service(objects: List[Dict[str, Any]], headless: bool = False) -> Dict[str, Any]:
    """The ClusterIP Service (http, grpc, metrics), or the headless one (grpc, one address per pod)."""
    found = [o for o in objects if o["kind"] == "Service"
             and o["metadata"]["name"].endswith("-headless") == headless]
    assert len(found) == 1, [o["metadata"]["name"] for o in found]
    return found[0]


def group_of(obj: Dict[str, Any]) -> str:
    api = obj["apiVersion"]
    return api.split("/")[0] if "/" in api else ""


def container(objects: List[Dict[str, Any]]) -> Dict[str, Any]:
    (triton,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return triton


def expand(text: str, env: Dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion of a container's args ($$ is a literal $)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def effective_args(triton: Dict[str, Any]) -> List[str]:
    env = {e["name"]: e["value"] for e in triton.get("env", []) if "value" in e}
    return [expand(arg, env) for arg in triton["args"]]


def flag(args: List[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} appears {len(values)} times in {args}"
    return values[0]


def port_number(triton: Dict[str, Any], port: Any) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in triton["ports"]}
    assert port in named, f"port {port!r} is not a container port name ({sorted(named)})"
    return named[port]


def adapter_rule(objects: List[Dict[str, Any]]) -> Dict[str, Any]:
    config = next(o for o in objects if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {}))
    (rule,) = yaml.safe_load(config["data"]["config.yaml"])["rules"]
    return rule


def scrape_job(objects: List[Dict[str, Any]]) -> Dict[str, Any]:
    config = next(o for o in objects if o["kind"] == "ConfigMap" and "tritonize-scrape.yaml" in o.get("data", {}))
    (job,) = yaml.safe_load(config["data"]["tritonize-scrape.yaml"])["scrape_configs"]
    return job


# -- trees ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trees(kubectl, tmp_path_factory) -> Dict[str, List[Dict[str, Any]]]:
    """name -> rendered objects, for the shipped trees and for trees the CLI writes."""
    root = tmp_path_factory.mktemp("k8s")
    deploy(root / "pvc", "--repository", "pvc://model-store/repos/sentiment", "--name", "sentiment",
           "--replicas", "2", "--max-replicas", "6")
    deploy(root / "s3", "--repository", "s3://ml-models/tritonize/sentiment", "--name", "sentiment", "--gpu",
           "--image", "registry.example.com/ml/tritonize-triton:0.1.0", "--credentials-secret", SECRET,
           "--namespace", "inference")
    deploy(root / "gs", "--repository", "gs://ml-models/repo", "--name", "pii")
    deploy(root / "image", "--repository", "/models", "--name", "baked")
    deploy(root / "tensorrt", "--repository", "pvc://model-store/repos/qa", "--name", "qa", "--gpu", "--tensorrt",
           "--image", "registry.example.com/ml/tritonize-triton:0.1.0")
    rendered = {
        "base": render(kubectl, MANIFESTS / "base"),
        "cpu": render(kubectl, MANIFESTS / "overlays" / "cpu"),
        "gpu": render(kubectl, MANIFESTS / "overlays" / "gpu"),
        "kserve": render(kubectl, MANIFESTS / "kserve"),
    }
    for name in ("pvc", "s3", "gs", "image", "tensorrt"):
        rendered[f"cli-{name}"] = render(kubectl, root / name)
    return rendered


SERVING = ["base", "cpu", "gpu", "cli-pvc", "cli-s3", "cli-gs", "cli-image", "cli-tensorrt"]


@pytest.mark.parametrize("tree", SERVING + ["kserve"])
def test_rendered_objects_validate_against_the_kubernetes_schemas(trees, tree):
    objects = trees[tree]
    kinds = sorted(o["kind"] for o in objects)
    if tree == "kserve":
        assert kinds == ["HorizontalPodAutoscaler", "InferenceService", "ServiceAccount"]
    else:
        assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                         "PodDisruptionBudget", "Service", "Service", "ServiceAccount"]
    for obj in objects:
        if group_of(obj) in CRD_GROUPS:
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{tree}: {obj['kind']}/{obj['metadata']['name']} is not valid Kubernetes "
                        f"{exc.version}: {path}: {exc.message}")


def test_kserve_inference_service(trees):
    objects = trees["kserve"]
    isvc = one(objects, "InferenceService")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    predictor = isvc["spec"]["predictor"]
    triton = predictor["triton"]
    assert re.match(r"^(s3|gs|pvc|https?)://[^/]+/", triton["storageUri"]), triton["storageUri"]
    assert triton["protocolVersion"] == "v2"
    assert re.match(r"^\d{2}\.\d{2}-py3$", triton["runtimeVersion"])
    assert triton["image"] == "tritonize-triton:latest"   # kustomize `images:` reached it (kustomizeconfig.yaml)
    # KServe's runtime gives the repository (--model-store=/mnt/models, from storageUri): not ours to repeat
    assert all(a.startswith("--") for a in triton["args"])
    assert not any(a.startswith(("--model-repository", "--model-store")) for a in triton["args"])
    assert "--strict-readiness=true" in triton["args"]
    # The triton predictor is a core Container plus KServe's fields, in a pod spec: validate it as a Pod.
    fields = {k: v for k, v in triton.items() if k not in ("storageUri", "runtimeVersion", "protocolVersion")}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"},
           "spec": {"containers": [{"name": "kserve-container", **fields}],
                    "volumes": predictor["volumes"], "serviceAccountName": predictor["serviceAccountName"]}}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    shm = {v["name"]: v for v in predictor["volumes"]}
    (mount,) = [m for m in triton["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    assert shm[mount["name"]]["emptyDir"]["medium"] == "Memory"
    assert predictor["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    # KServe's RawDeployment names the Deployment <name>-predictor; no KServe autoscaler beside ours
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": f"{isvc['metadata']['name']}-predictor"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == adapter_rule(trees["base"])["name"]["as"]


@pytest.mark.parametrize("tree", SERVING)
def test_probes_ask_triton_health_on_the_http_port(trees, tree):
    triton = container(trees[tree])
    args = effective_args(triton)
    http = int(flag(args, "http-port"))
    assert port_number(triton, "http") == http == 8000
    assert int(flag(args, "grpc-port")) == port_number(triton, "grpc")
    assert int(flag(args, "metrics-port")) == port_number(triton, "metrics")
    paths = {}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = triton[probe]["httpGet"]
        assert port_number(triton, get["port"]) == http, probe
        paths[probe] = get["path"]
    assert paths == {"startupProbe": "/v2/health/ready", "readinessProbe": "/v2/health/ready",
                     "livenessProbe": "/v2/health/live"}
    # model loads take minutes: the startup probe allows at least 5 of them before liveness starts
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert "--strict-readiness=true" in args
    assert flag(args, "model-control-mode") in ("none", "explicit", "poll")
    exit_timeout = int(flag(args, "exit-timeout-secs"))
    pod = one(trees[tree], "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > exit_timeout
    # the Python backend's shared memory
    volumes = {v["name"]: v for v in pod["volumes"]}
    (shm,) = [m for m in triton["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert triton["securityContext"]["allowPrivilegeEscalation"] is False
    assert "memory" in triton["resources"]["limits"] and "cpu" in triton["resources"]["requests"]


def replay_relabel(rules: List[Dict[str, Any]], labels: Dict[str, str]) -> Optional[Dict[str, str]]:
    """Prometheus relabel_configs (keep, drop, replace) on one target; None when dropped."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            replacement = str(rule.get("replacement", "$1"))
            result = re.sub(r"\$\{?(\d+)\}?", lambda m: match.group(int(m.group(1))) or "", replacement)
            labels[rule["target_label"]] = result
    return {k: v for k, v in labels.items() if not k.startswith("__meta_")}


def pod_targets(pod: Dict[str, Any], namespace: str, name: str, ip: str) -> List[Dict[str, str]]:
    """What Prometheus's kubernetes_sd (role: pod) makes of a pod: one target per container port."""
    def clean(key: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", "_", key)

    meta = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_ip": ip}
    meta.update({f"__meta_kubernetes_pod_label_{clean(k)}": v for k, v in pod["metadata"]["labels"].items()})
    meta.update({f"__meta_kubernetes_pod_annotation_{clean(k)}": v
                 for k, v in pod["metadata"].get("annotations", {}).items()})
    targets = []
    for c in pod["spec"]["containers"]:
        for p in c["ports"]:
            address = f"[{ip}]:{p['containerPort']}" if ":" in ip else f"{ip}:{p['containerPort']}"
            targets.append({**meta, "__address__": address, "__metrics_path__": "/metrics",
                            "__meta_kubernetes_pod_container_port_name": p["name"]})
    return targets


@pytest.mark.parametrize("tree", ["base", "cli-pvc", "cli-s3"])
def test_service_and_prometheus_agree_on_the_ports(trees, tree):
    objects = trees[tree]
    triton = container(objects)
    service = the_service(objects)
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert {name: p["port"] for name, p in ports.items()} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    for name, p in ports.items():
        assert port_number(triton, p["targetPort"]) == p["port"], name
    template = one(objects, "Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port_number(triton, "metrics") == ports["metrics"]["port"]

    job = scrape_job(objects)
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    for ip, address in (("10.1.2.3", "10.1.2.3:8002"), ("fd00::1:7", "[fd00::1:7]:8002")):
        scraped = [replay_relabel(job["relabel_configs"], t) for t in pod_targets(template, "ml", "p-0", ip)]
        kept = {tuple(sorted(t.items())) for t in scraped if t is not None}
        assert len(kept) == 1, f"the pod's ports should collapse into one target: {kept}"
        (target,) = [dict(t) for t in kept]
        assert target["__address__"] == address
        assert target["__metrics_path__"] == annotations["prometheus.io/path"] == "/metrics"
        assert target["namespace"] == "ml" and target["pod"] == "p-0"
    # a pod that is not tritonize's is not scraped by this job
    stranger = {"metadata": {"labels": {"app": "other"}, "annotations": annotations}, "spec": template["spec"]}
    assert all(replay_relabel(job["relabel_configs"], t) is None for t in pod_targets(stranger, "ml", "x", "10.0.0.9"))


def test_hpa_scales_the_prefixed_deployment_on_the_adapter_metric(trees):
    objects = trees["cli-pvc"]
    deployment = one(objects, "Deployment")
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert deployment["metadata"]["name"] == "sentiment-triton"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert "replicas" not in deployment["spec"]          # the HPA owns it
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    rule = adapter_rule(objects)
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"] == "tritonize_queue_time_per_request_us"
    # the rule discovers Triton's queue counter and divides it by the successful requests
    series = re.match(r"^(\w+)\{", rule["seriesQuery"]).group(1)
    assert series == "nv_inference_queue_duration_us"
    assert re.fullmatch(rule["name"]["matches"], series)
    query = rule["metricsQuery"]
    assert re.search(r"rate\(nv_inference_queue_duration_us\{<<\.LabelMatchers>>\}\[\w+\]\)", query)
    assert re.search(r"rate\(nv_inference_request_success\{<<\.LabelMatchers>>\}\[\w+\]\)", query)
    assert query.index("nv_inference_queue_duration_us") < query.index("/") < query.index("nv_inference_request_success")
    assert "<<.GroupBy>>" in query
    # the adapter maps the series' namespace and pod labels to objects: the scrape job must set them
    overrides = rule["resources"]["overrides"]
    assert {k: v["resource"] for k, v in overrides.items()} == {"namespace": "namespace", "pod": "pod"}
    set_by_job = {r["target_label"] for r in scrape_job(objects)["relabel_configs"] if r.get("target_label")}
    assert set(overrides) <= set_by_job
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_gpu_overlay_asks_for_a_gpu_and_the_cpu_overlay_does_not(trees):
    for tree in ("gpu", "cli-s3"):
        triton = container(trees[tree])
        assert str(triton["resources"]["limits"]["nvidia.com/gpu"]) == "1"
        pod = one(trees[tree], "Deployment")["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert "--allow-gpu-metrics=false" not in triton["args"]
    for tree in ("base", "cpu", "cli-pvc"):
        triton = container(trees[tree])
        assert "nvidia.com/gpu" not in triton["resources"].get("limits", {})
        assert "tolerations" not in one(trees[tree], "Deployment")["spec"]["template"]["spec"]
    assert "--allow-gpu-metrics=false" in container(trees["cpu"])["args"]


def test_object_storage_repository_goes_to_tritonserver_as_given(trees):
    objects = trees["cli-s3"]
    triton = container(objects)
    assert flag(effective_args(triton), "model-repository") == "s3://ml-models/tritonize/sentiment"
    assert triton["image"] == "registry.example.com/ml/tritonize-triton:0.1.0"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in triton["env"] if "valueFrom" in e
            and "secretKeyRef" in e["valueFrom"]}
    assert {name: ref["name"] for name, ref in refs.items()} == {
        key: SECRET for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN")}
    assert all(ref["key"] == name for name, ref in refs.items())
    assert not refs["AWS_ACCESS_KEY_ID"].get("optional") and refs["AWS_DEFAULT_REGION"]["optional"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])   # no claim to wait for
    assert "/models" not in {m["mountPath"] for m in triton["volumeMounts"]}
    assert {o["metadata"].get("namespace") for o in objects} == {"inference"}


def test_gcs_key_file_is_where_google_application_credentials_points(trees):
    triton = container(trees["cli-gs"])
    assert flag(effective_args(triton), "model-repository") == "gs://ml-models/repo"
    env = {e["name"]: e.get("value") for e in triton["env"]}
    key_path = Path(env["GOOGLE_APPLICATION_CREDENTIALS"])
    volumes = {v["name"]: v for v in one(trees["cli-gs"], "Deployment")["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in triton["volumeMounts"] if Path(m["mountPath"]) == key_path.parent]
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == k8s.DEFAULT_CREDENTIALS_SECRET
    assert [item["path"] for item in secret["items"]] == [key_path.name]


def test_pvc_repository_is_mounted_and_passed_as_a_local_path(trees):
    objects = trees["cli-pvc"]
    triton = container(objects)
    path = flag(effective_args(triton), "model-repository")
    assert path == "/models/repos/sentiment"
    (mount,) = [m for m in triton["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    volumes = {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mount["name"]]["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": True}
    assert not any(e["name"].startswith("AWS_") for e in triton["env"])
    # the base alone reads its own claim at /models
    base = container(trees["base"])
    assert flag(effective_args(base), "model-repository") == "/models"
    base_volumes = one(trees["base"], "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"claimName": k8s.BASE_CLAIM, "readOnly": True} in [v.get("persistentVolumeClaim") for v in base_volumes]
    # a repository baked into the image: no volume at /models
    baked = container(trees["cli-image"])
    assert flag(effective_args(baked), "model-repository") == "/models"
    assert "/models" not in {m["mountPath"] for m in baked["volumeMounts"]}


def test_two_deployments_in_one_namespace_select_only_their_own_pods(trees):
    mine, theirs = trees["cli-gs"], trees["cli-image"]     # names pii and baked
    names = {o["metadata"]["name"] for o in mine} & {o["metadata"]["name"] for o in theirs}
    assert names == set(), f"objects with the same name: {names}"
    their_pods = one(theirs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    my_pods = one(mine, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind, selector in (("Service", lambda o: o["spec"]["selector"]),
                           ("Service-headless", lambda o: o["spec"]["selector"]),
                           ("Deployment", lambda o: o["spec"]["selector"]["matchLabels"]),
                           ("PodDisruptionBudget", lambda o: o["spec"]["selector"]["matchLabels"])):
        chosen = selector(the_service(mine, kind.endswith("headless")) if kind.startswith("Service")
                          else one(mine, kind))
        assert chosen.items() <= my_pods.items(), kind
        assert not chosen.items() <= their_pods.items(), f"{kind} of pii selects baked's pods"
    assert one(mine, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "pii-triton"


def test_prometheus_operator_component_selects_the_service(kubectl, tmp_path):
    deploy(tmp_path / "tree", "--repository", "s3://b/r", "--name", "clf", "--prometheus-operator")
    objects = render(kubectl, tmp_path / "tree")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] == "clf-triton"
    service = the_service(objects)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "clf"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    # the relabelled labels are the ones prometheus-adapter's rule maps to pods
    set_labels = {r["targetLabel"] for r in endpoint["relabelings"]}
    assert set(adapter_rule(objects)["resources"]["overrides"]) <= set_labels
    for obj in objects:
        if group_of(obj) not in CRD_GROUPS:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("args, value", [
    (["--name", "Sentiment_Model", "--repository", "s3://b/r"], "Sentiment_Model"),
    (["--name", "1model", "--repository", "s3://b/r"], "1model"),
    (["--name", "m" * 60, "--repository", "s3://b/r"], "m" * 60),
    (["--name", "ok", "--repository", "ftp://files.example.com/repo"], "ftp://files.example.com/repo"),
    (["--name", "ok", "--repository", "model_repository"], "model_repository"),
    (["--name", "ok", "--repository", "s3://"], "s3://"),
    (["--name", "ok", "--repository", "pvc://Bad_Claim/x"], "Bad_Claim"),
    (["--name", "ok", "--repository", "pvc://claim/../etc"], "pvc://claim/../etc"),
    (["--name", "ok", "--repository", "s3://b/r", "--image", "Registry/UPPER:tag"], "Registry/UPPER:tag"),
    (["--name", "ok", "--repository", "s3://b/r", "--replicas", "5", "--max-replicas", "2"], "max replicas 2"),
    (["--name", "ok", "--repository", "s3://b/r", "--namespace", "Bad.NS"], "Bad.NS"),
    (["--name", "ok", "--repository", "pvc://c/r", "--tensorrt"], "--tensorrt"),
    (["--name", "ok", "--repository", "s3://b/r", "--gpu", "--tensorrt"], "s3://b/r"),
])
def test_bad_inputs_exit_2_naming_the_value(tmp_path, args, value):
    out = tmp_path / "out"
    result = cli("deploy", "kubernetes", "--out", str(out), *args)
    assert result.returncode == 2, result.stderr
    assert value in result.stderr
    assert result.stderr.startswith("tritonize: error: ") and result.stderr.count("\n") == 1
    assert not out.exists()


def test_out_must_be_empty_unless_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "NOTES.md").write_text("mine")
    result = cli("deploy", "kubernetes", "--out", str(out), "--repository", "s3://b/r", "--name", "a")
    assert result.returncode == 2 and str(out) in result.stderr and "--force" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["NOTES.md"]
    first = deploy(out, "--repository", "s3://b/r", "--name", "a", "--force")
    assert f"kubectl apply -k {out}" in first.stdout
    assert "create secret generic tritonize-storage-credentials" in first.stdout
    assert (out / "overlays" / "cpu").is_dir()
    deploy(out, "--repository", "pvc://claim", "--name", "a", "--gpu", "--force")
    assert not (out / "overlays" / "cpu").exists()      # what the first run wrote is replaced
    assert (out / "overlays" / "gpu" / "kustomization.yaml").is_file()
    assert (out / "NOTES.md").read_text() == "mine"     # what it did not write is kept
    header = (out / "kustomization.yaml").read_text().splitlines()[0]
    assert "--repository pvc://claim" in header and "--gpu" in header


def test_write_kubernetes_returns_what_it_wrote(tmp_path):
    plan = k8s.plan_kubernetes("gs://b/r", "m", image="tritonize-triton@sha256:" + "a" * 64)
    written = k8s.write_kubernetes(plan, tmp_path / "t")
    files = {p.relative_to(tmp_path / "t").as_posix() for p in written}
    assert files == {p.relative_to(tmp_path / "t").as_posix() for p in (tmp_path / "t").rglob("*") if p.is_file()}
    shipped = {p.relative_to(MANIFESTS).as_posix() for p in (MANIFESTS / "base").rglob("*") if p.is_file()}
    assert shipped <= files and "overlays/cpu/kustomization.yaml" in files
    kustomization = yaml.safe_load((tmp_path / "t" / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "tritonize-triton", "newName": "tritonize-triton",
                                        "digest": "sha256:" + "a" * 64}]


def test_yaml_writer_round_trips():
    document = {
        "plain": "abc", "colon": "s3://b/p", "bool-like": ["true", "no", "on", "Null", "y"], "number-like": ["1", "0.1.0", "1e3"],
        "flags": ["--x=$(Y)", "- dash", "#hash", "a: b", "quote\"d", "ünï"], "$patch": "delete", "empty": {}, "none": [],
        "nested": [{"a": [1, 2.5, True, None]}, [["deep"]]],
    }
    assert yaml.safe_load(k8s.to_yaml(document, ["a comment"])) == document


def test_tensorrt_engines_are_built_on_the_pods_gpu_before_triton_starts(trees):
    """--tensorrt: an init container copies the PVC's repository into an emptyDir and runs build-engines on
    the pod's GPU, with the same (replaced) image; tritonserver serves that copy."""
    objects = trees["cli-tensorrt"]
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    [init] = spec["initContainers"]
    assert init["image"] == "registry.example.com/ml/tritonize-triton:0.1.0"  # images: reaches it too
    assert "tritonize build-engines /repository" in init["command"][-1]
    assert {e["name"]: e["value"] for e in init["env"]}["SOURCE_REPOSITORY"] == "/models/repos/qa"
    assert init["resources"]["limits"]["nvidia.com/gpu"] == "1"
    mounts = {m["name"]: m for m in init["volumeMounts"]}
    assert mounts["model-repository"]["readOnly"] is True and mounts["engine-repository"]["mountPath"] == "/repository"
    triton = container(objects)
    assert flag(effective_args(triton), "model-repository") == "/repository"
    assert {m["name"] for m in triton["volumeMounts"]} >= {"engine-repository", "model-repository"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["engine-repository"]
    assert volumes["model-repository"]["persistentVolumeClaim"]["claimName"] == "model-store"


def test_a_headless_service_gives_the_sdk_one_address_per_pod(trees):
    """Client("dns:///NAME-triton-headless:8001") spreads calls over the replicas (client/endpoints.py)."""
    objects = trees["cli-pvc"]
    headless = the_service(objects, headless=True)
    assert headless["metadata"]["name"] == "sentiment-triton-headless"
    assert headless["spec"]["clusterIP"] == "None"
    (port,) = headless["spec"]["ports"]
    triton = container(objects)
    assert port["port"] == port_number(triton, port["targetPort"]) == 8001
    pods = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= pods.items()
