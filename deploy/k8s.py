"""Write a deployable Kustomize tree that serves one model repository on Kubernetes.

The manifests themselves live in ``kubernetes/`` next to this module (a Kustomize base, a CPU and
a GPU overlay, a Prometheus Operator component, a KServe InferenceService); ``kubectl kustomize``
renders them with no cluster. :func:`write_kubernetes` copies the base and one overlay into a
directory and writes the ``kustomization.yaml`` above them that makes them this deployment's::

    OUT/kustomization.yaml          name prefix, instance label, namespace, image, patches
    OUT/patches/repository.yaml     where tritonserver reads the repository (PVC or object storage)
    OUT/patches/autoscaling.yaml    replicas: the HorizontalPodAutoscaler's bounds
    OUT/base/...                    copies of kubernetes/base
    OUT/overlays/{cpu,gpu}/...      and of the chosen overlay
    OUT/components/...              and, if asked, of the Prometheus Operator component

``kubectl apply -k OUT`` deploys it. Only the standard library is used: the YAML is built as data
and written by a small emitter (block style, strings quoted where YAML would read them otherwise).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

MANIFESTS = Path(__file__).parent / "kubernetes"
"""The Kustomize base, overlays, components and KServe manifests shipped with the package."""

BASE_NAME = "triton"                       # metadata.name of every object in the base
BASE_IMAGE = "tritonize-triton"            # the image name the base (and `images:`) use
BASE_CLAIM = "tritonize-model-repository"  # the base's PersistentVolumeClaim
MOUNT_PATH = "/models"                     # where the base mounts it
REPOSITORY_ENV = "TRITONIZE_MODEL_REPOSITORY"  # tritonserver --model-repository=$(this)
ENGINE_REPOSITORY = "/repository"          # --tensorrt: the copy of the repository with its engines
DEFAULT_CREDENTIALS_SECRET = "tritonize-storage-credentials"
DEFAULT_MAX_REPLICAS = 4                   # the base HPA's maxReplicas
INSTANCE_LABEL = "app.kubernetes.io/instance"
CREDENTIALS_MOUNT = "/var/run/secrets/tritonize/storage"
GCS_KEY_FILE = "key.json"
SCHEMES = ("pvc://", "s3://", "gs://", "as://", "/absolute/path")
MAX_NAME = 63 - len("-" + BASE_NAME)       # the Service NAME-triton must be a 63-character DNS label

# Files this module writes into OUT; --force replaces exactly these.
OWNED = ("kustomization.yaml", "patches", "base", "overlays", "components")

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")                    # RFC 1035: Service names
_DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")            # namespaces
_DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_IMAGE_PATH_COMPONENT = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$")
_IMAGE_REGISTRY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]+)?$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_IMAGE_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")


class KubernetesError(ValueError):
    """A value that cannot make a deployment; the message names it and says what would."""


# -- inputs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelRepository:
    """Where the pods read the model repository from.

    * ``pvc://CLAIM[/PATH]``: the PersistentVolumeClaim CLAIM mounted read-only at /models;
      tritonserver reads ``/models/PATH``.
    * ``s3://BUCKET/PATH`` (or ``s3://HOST:PORT/BUCKET/PATH`` for MinIO and other S3 servers),
      ``gs://BUCKET/PATH``, ``as://ACCOUNT/CONTAINER/PATH``: tritonserver reads object storage
      itself, with credentials from a Secret in its environment (or the pod's cloud identity).
    * ``/ABSOLUTE/PATH``: a directory inside the image (deploy/docker/Dockerfile's
      ``--build-arg MODEL_REPOSITORY=...`` bakes one in at /models); no volume is mounted.
    """

    uri: str
    kind: str                      # pvc | s3 | gs | as | path
    model_repository: str          # the value of tritonserver's --model-repository
    claim: Optional[str] = None    # the PVC mounted at /models, if any

    @property
    def object_storage(self) -> bool:
        return self.kind in ("s3", "gs", "as")

    @classmethod
    def parse(cls, uri: str) -> "ModelRepository":
        text = uri.strip()
        if not text or any(c.isspace() for c in text):
            raise KubernetesError(f"repository {uri!r} is empty or contains spaces; give one of {_schemes()}")
        scheme, sep, rest = text.partition("://")
        if not sep:
            if text.startswith("/"):
                return cls(uri, "path", _clean_path(text, uri))
            raise KubernetesError(
                f"repository {uri!r} is a path on this machine, which the cluster cannot read: copy it "
                f"to a PersistentVolumeClaim and give pvc://CLAIM/PATH, or to object storage "
                f"(s3://BUCKET/PATH, gs://BUCKET/PATH), or bake it into the image and give its absolute "
                f"path inside the container")
        scheme = scheme.lower()
        if scheme == "pvc":
            claim, _, sub = rest.partition("/")
            if not _DNS_1123_SUBDOMAIN.match(claim) or len(claim) > 253:
                raise KubernetesError(
                    f"repository {uri!r}: claim {claim!r} is not a PersistentVolumeClaim name (lowercase "
                    f"letters, digits, '-' and '.'); write pvc://CLAIM/PATH/IN/THE/VOLUME")
            path = _clean_path(posixpath.join(MOUNT_PATH, sub), uri) if sub.strip("/") else MOUNT_PATH
            return cls(uri, "pvc", path, claim)
        if scheme in ("s3", "gs", "as"):
            parts = [p for p in rest.split("/") if p]
            needed = 2 if scheme == "as" else 1
            if len(parts) < needed:
                shape = {"s3": "s3://BUCKET/PATH", "gs": "gs://BUCKET/PATH",
                         "as": "as://ACCOUNT/CONTAINER/PATH"}[scheme]
                raise KubernetesError(f"repository {uri!r} names no bucket; write {shape}")
            if ".." in parts:
                raise KubernetesError(f"repository {uri!r} contains '..'; give the repository's own path")
            return cls(uri, scheme, f"{scheme}://{rest}")
        raise KubernetesError(
            f"repository {uri!r} has the scheme {scheme + '://'!r}, which tritonserver cannot read "
            f"here; give one of {_schemes()}")


def _schemes() -> str:
    return ", ".join(SCHEMES)


def _clean_path(path: str, uri: str) -> str:
    if ".." in path.split("/"):
        raise KubernetesError(f"repository {uri!r} contains '..'; give the repository's own path")
    clean = posixpath.normpath(path)
    return "/" + clean.lstrip("/")


def check_name(name: str) -> str:
    """The deployment's name: the prefix of every object (NAME-triton) and its instance label."""
    if not _DNS_LABEL.match(name) or len(name) > MAX_NAME:
        suggestion = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
        suggestion = re.sub(r"^[^a-z]+", "", suggestion)[:MAX_NAME].rstrip("-")
        hint = f"; try {suggestion!r}" if suggestion and _DNS_LABEL.match(suggestion) else ""
        raise KubernetesError(
            f"name {name!r} is not a DNS-1123 label Kubernetes accepts for the Service "
            f"{name + '-' + BASE_NAME!r}: lowercase letters, digits and '-', starting with a letter, "
            f"ending with a letter or digit, at most {MAX_NAME} characters{hint}")
    return name


@dataclass(frozen=True)
class ImageRef:
    """An image reference, split the way Kustomize's ``images:`` takes it."""

    name: str
    tag: Optional[str] = None
    digest: Optional[str] = None
    text: str = ""  # as given

    @classmethod
    def parse(cls, image: str) -> "ImageRef":
        text = image.strip()
        rest, _, digest = text.partition("@")
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        name, tag = (rest[:colon], rest[colon + 1:]) if colon > slash else (rest, None)
        components = name.split("/")
        registry = components[0] if len(components) > 1 and (
            "." in components[0] or ":" in components[0] or components[0] == "localhost") else None
        paths = components[1:] if registry else components
        ok = (bool(name) and (registry is None or bool(_IMAGE_REGISTRY.match(registry)))
              and all(_IMAGE_PATH_COMPONENT.match(p) for p in paths)
              and (tag is None or bool(_IMAGE_TAG.match(tag)))
              and (not digest or bool(_IMAGE_DIGEST.match(digest))))
        if not ok or (not digest and "@" in text):
            raise KubernetesError(
                f"image {image!r} is not an image reference: [REGISTRY[:PORT]/]REPOSITORY[:TAG][@DIGEST], "
                f"repository in lowercase, e.g. registry.example.com/ml/tritonize-triton:0.1.0")
        if tag is None and not digest:
            tag = "latest"  # what docker and the kubelet read for an untagged image
        return cls(name, tag, digest or None, text)

    def kustomize(self) -> Dict[str, str]:
        entry = {"name": BASE_IMAGE, "newName": self.name}
        if self.tag:
            entry["newTag"] = self.tag
        if self.digest:
            entry["digest"] = self.digest
        return entry


# -- the tree -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class KubernetesDeployment:
    """Everything :func:`write_kubernetes` needs, checked."""

    repository: ModelRepository
    name: str
    gpu: bool = False
    image: Optional[ImageRef] = None
    replicas: int = 1
    max_replicas: int = DEFAULT_MAX_REPLICAS
    namespace: Optional[str] = None
    credentials_secret: Optional[str] = DEFAULT_CREDENTIALS_SECRET
    prometheus_operator: bool = False   # also a ServiceMonitor (components/prometheus-operator)
    tensorrt: bool = False              # an init container builds the TensorRT engines on the pod's GPU

    @property
    def overlay(self) -> str:
        return "gpu" if self.gpu else "cpu"

    def kustomization(self) -> Dict[str, Any]:
        doc: Dict[str, Any] = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
        }
        if self.namespace:
            doc["namespace"] = self.namespace
        doc["namePrefix"] = f"{self.name}-"
        doc["labels"] = [{"pairs": {INSTANCE_LABEL: self.name}, "includeSelectors": True}]
        doc["resources"] = [f"overlays/{self.overlay}"]
        if self.prometheus_operator:
            # here, where the prefix and the instance label are set, so that they reach the ServiceMonitor
            doc["components"] = ["components/prometheus-operator"]
        doc["patches"] = [{"path": "patches/repository.yaml"}, {"path": "patches/autoscaling.yaml"}]
        if self.tensorrt:  # after repository.yaml: it points tritonserver at the copy with engines
            doc["patches"].append({"path": "patches/tensorrt.yaml"})
        if self.image is not None:
            doc["images"] = [self.image.kustomize()]
        return doc

    def repository_patch(self) -> Dict[str, Any]:
        """Strategic-merge patch of the base Deployment: the repository, its volume, its credentials."""
        repo = self.repository
        env: List[Dict[str, Any]] = [{"name": REPOSITORY_ENV, "value": repo.model_repository}]
        mounts: List[Dict[str, Any]] = []
        volumes: List[Dict[str, Any]] = []
        if repo.claim is not None:
            volumes.append({"name": "model-repository",
                            "persistentVolumeClaim": {"claimName": repo.claim, "readOnly": True}})
        else:  # object storage or a path in the image: no claim to wait for
            mounts.append({"mountPath": MOUNT_PATH, "$patch": "delete"})
            volumes.append({"name": "model-repository", "$patch": "delete"})
        secret = self.credentials_secret
        if repo.object_storage and secret:
            if repo.kind == "s3":
                env += [_secret_env(key, secret) for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
                env += [_secret_env(key, secret, optional=True)
                        for key in ("AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN")]
            elif repo.kind == "as":
                env += [_secret_env(key, secret) for key in ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY")]
            else:  # gs: a service-account key file
                env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS",
                            "value": f"{CREDENTIALS_MOUNT}/{GCS_KEY_FILE}"})
                mounts.append({"name": "storage-credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True})
                volumes.append({"name": "storage-credentials",
                                "secret": {"secretName": secret,
                                           "items": [{"key": GCS_KEY_FILE, "path": GCS_KEY_FILE}]}})
        container: Dict[str, Any] = {"name": "triton", "env": env}
        if mounts:
            container["volumeMounts"] = mounts
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": BASE_NAME},
            "spec": {"template": {"spec": {"containers": [container], "volumes": volumes}}},
        }

    def tensorrt_patch(self) -> Dict[str, Any]:
        """An init container that copies the repository into an emptyDir and runs ``tritonize build-engines``
        there, on the pod's own GPU (an engine belongs to the GPU model and TensorRT version that built it);
        tritonserver then serves the copy. The image needs tritonize and TensorRT (deploy/docker/Dockerfile,
        ``--build-arg TENSORRT=tensorrt==10.5.*``)."""
        source = self.repository.model_repository
        init = {
            "name": "build-engines",
            "image": f"{BASE_IMAGE}:latest",
            "command": ["sh", "-c", 'cp -a "$SOURCE_REPOSITORY/." /repository/ && tritonize build-engines /repository'],
            "env": [{"name": "SOURCE_REPOSITORY", "value": source}],
            "resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "4", "memory": "16Gi"},
                          "requests": {"cpu": "4", "memory": "16Gi"}},
            "volumeMounts": [{"name": "model-repository", "mountPath": MOUNT_PATH, "readOnly": True},
                             {"name": "engine-repository", "mountPath": ENGINE_REPOSITORY}],
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": BASE_NAME},
            "spec": {"template": {"spec": {
                "initContainers": [init],
                "containers": [{"name": "triton", "env": [{"name": REPOSITORY_ENV, "value": ENGINE_REPOSITORY}],
                                "volumeMounts": [{"name": "engine-repository", "mountPath": ENGINE_REPOSITORY,
                                                  "readOnly": True}]}],
                "volumes": [{"name": "engine-repository", "emptyDir": {"sizeLimit": "20Gi"}}],
            }}},
        }

    def autoscaling_patch(self) -> Dict[str, Any]:
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": BASE_NAME},
            "spec": {"minReplicas": self.replicas, "maxReplicas": self.max_replicas},
        }

    def command(self, out: Path) -> str:
        """The ``tritonize deploy kubernetes`` command line that writes this tree into ``out``."""
        words = ["tritonize", "deploy", "kubernetes", "--repository", self.repository.uri,
                 "--name", self.name, "--out", str(out)]
        if self.gpu:
            words.append("--gpu")
        if self.image is not None:
            words += ["--image", self.image.text]
        if self.replicas != 1:
            words += ["--replicas", str(self.replicas)]
        if self.max_replicas != max(self.replicas, DEFAULT_MAX_REPLICAS):
            words += ["--max-replicas", str(self.max_replicas)]
        if self.namespace:
            words += ["--namespace", self.namespace]
        if self.prometheus_operator:
            words.append("--prometheus-operator")
        if self.tensorrt:
            words.append("--tensorrt")
        if self.credentials_secret != DEFAULT_CREDENTIALS_SECRET and self.repository.object_storage:
            words += ["--credentials-secret", self.credentials_secret or ""]
        return " ".join(shlex.quote(w) for w in words) + " --force"

    def credentials_hint(self) -> Optional[str]:
        """The command that creates the credentials Secret the pods read, if they read one."""
        secret, kind = self.credentials_secret, self.repository.kind
        if not (self.repository.object_storage and secret):
            return None
        ns = f" -n {self.namespace}" if self.namespace else ""
        if kind == "s3":
            values = ("--from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=... "
                      "--from-literal=AWS_DEFAULT_REGION=...")
        elif kind == "as":
            values = "--from-literal=AZURE_STORAGE_ACCOUNT=... --from-literal=AZURE_STORAGE_KEY=..."
        else:
            values = f"--from-file={GCS_KEY_FILE}=SERVICE_ACCOUNT_KEY.json"
        return f"kubectl{ns} create secret generic {secret} {values}"


def _secret_env(key: str, secret: str, optional: bool = False) -> Dict[str, Any]:
    ref: Dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": key, "valueFrom": {"secretKeyRef": ref}}


def plan_kubernetes(
    repository: str,
    name: str,
    *,
    gpu: bool = False,
    image: Optional[str] = None,
    replicas: int = 1,
    max_replicas: Optional[int] = None,
    namespace: Optional[str] = None,
    credentials_secret: Optional[str] = DEFAULT_CREDENTIALS_SECRET,
    prometheus_operator: bool = False,
    tensorrt: bool = False,
) -> KubernetesDeployment:
    """Check every input and say what the tree will hold; raises :class:`KubernetesError`.

    ``repository``: ``pvc://CLAIM/PATH``, ``s3://``, ``gs://``, ``as://`` or an absolute path in the
    container (see :class:`ModelRepository`). ``gpu`` picks the GPU overlay (one nvidia.com/gpu per
    pod, GPU nodes) over the CPU one. ``image`` replaces ``tritonize-triton``. ``replicas`` and
    ``max_replicas`` bound the autoscaler. ``credentials_secret`` (object storage only; None for a
    cloud identity such as IRSA or Workload Identity) is the Secret the pods read keys from.
    ``prometheus_operator`` adds a ServiceMonitor (a Prometheus Operator CRD) on the Service;
    ``tensorrt`` an init container that builds the TensorRT engines on the pod's GPU.
    """
    repo = ModelRepository.parse(repository)
    if tensorrt and not gpu:
        raise KubernetesError("--tensorrt builds TensorRT engines on the pod's GPU: add --gpu")
    if tensorrt and repo.claim is None:
        raise KubernetesError(f"--tensorrt copies the repository from a volume before building engines; "
                              f"{repository!r} is not a pvc:// repository (object storage would need its own "
                              f"copy step: build the engines into the bucket from a GPU job instead)")
    check_name(name)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise KubernetesError(f"replicas {replicas!r} must be a whole number of at least 1")
    top = max(replicas, DEFAULT_MAX_REPLICAS) if max_replicas is None else max_replicas
    if isinstance(top, bool) or not isinstance(top, int) or top < replicas:
        raise KubernetesError(f"max replicas {top!r} must be a whole number of at least replicas ({replicas})")
    if namespace is not None and (not _DNS_1123_LABEL.match(namespace) or len(namespace) > 63):
        raise KubernetesError(f"namespace {namespace!r} is not a DNS-1123 label (lowercase letters, digits "
                              f"and '-', at most 63 characters)")
    if credentials_secret and (not _DNS_1123_SUBDOMAIN.match(credentials_secret) or len(credentials_secret) > 253):
        raise KubernetesError(f"credentials secret {credentials_secret!r} is not a Secret name (lowercase "
                              f"letters, digits, '-' and '.')")
    return KubernetesDeployment(
        repository=repo, name=name, gpu=gpu, image=ImageRef.parse(image) if image is not None else None,
        replicas=replicas, max_replicas=top, namespace=namespace or None,
        credentials_secret=credentials_secret or None, prometheus_operator=prometheus_operator,
        tensorrt=tensorrt,
    )


def write_kubernetes(plan: KubernetesDeployment, out: Path, *, force: bool = False) -> List[Path]:
    """Write the Kustomize tree of ``plan`` (checked by :func:`plan_kubernetes`) into ``out``; return its files.

    ``out`` must be empty or missing unless ``force``, which replaces what an earlier run wrote
    there (and nothing else). The kustomization's header records the command that writes it again.
    """
    out = Path(out)
    base = MANIFESTS / "base"
    overlay = MANIFESTS / "overlays" / plan.overlay
    component = MANIFESTS / "components" / "prometheus-operator"
    for source in (base, overlay) + ((component,) if plan.prometheus_operator else ()):
        if not (source / "kustomization.yaml").is_file():
            raise KubernetesError(f"the packaged manifests are missing: no {source / 'kustomization.yaml'} "
                                  f"(reinstall tritonize)")
    if out.exists() and not out.is_dir():
        raise KubernetesError(f"out {str(out)!r} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise KubernetesError(f"out directory {str(out)!r} is not empty; give an empty or new directory, "
                                  f"or --force to replace what an earlier run wrote there")
        for entry in OWNED:
            target = out / entry
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(base, out / "base", ignore=ignore)
    shutil.copytree(overlay, out / "overlays" / plan.overlay, ignore=ignore)
    if plan.prometheus_operator:
        shutil.copytree(component, out / "components" / "prometheus-operator", ignore=ignore)
    header = ["Written by: " + plan.command(out), "Render: kubectl kustomize DIR    Deploy: kubectl apply -k DIR"]
    written = [
        _write_yaml(out / "kustomization.yaml", plan.kustomization(), header),
        _write_yaml(out / "patches" / "repository.yaml", plan.repository_patch(),
                    [f"The model repository: {plan.repository.uri}"]),
        _write_yaml(out / "patches" / "autoscaling.yaml", plan.autoscaling_patch(),
                    ["Replicas: the HorizontalPodAutoscaler's bounds (the Deployment has no replicas field)"]),
    ]
    if plan.tensorrt:
        written.append(_write_yaml(out / "patches" / "tensorrt.yaml", plan.tensorrt_patch(),
                                   ["TensorRT engines, built on the pod's GPU before tritonserver starts"]))
    copied = sorted(p for p in (out / "base").rglob("*") if p.is_file())
    copied += sorted(p for p in (out / "overlays").rglob("*") if p.is_file())
    copied += sorted(p for p in (out / "components").rglob("*") if p.is_file())
    return written + copied


def describe(plan: KubernetesDeployment, out: Path, written: Sequence[Path]) -> str:
    """What :func:`write_kubernetes` wrote, and what to run next: ``tritonize deploy kubernetes``'s output."""
    out = Path(out)
    lines = [f"wrote {len(written)} files into {out} ({plan.overlay} overlay; objects {plan.name}-{BASE_NAME}, "
             f"label {INSTANCE_LABEL}={plan.name}):"]
    lines += [f"  {path.relative_to(out) if path.is_relative_to(out) else path}" for path in written]
    lines.append(f"tritonserver --model-repository={plan.repository.model_repository}"
                 + (f" (the claim {plan.repository.claim} mounted at {MOUNT_PATH})" if plan.repository.claim else ""))
    hint = plan.credentials_hint()
    if hint:
        lines.append(f"the pods read credentials from the Secret {plan.credentials_secret}; create it first:")
        lines.append(f"  {hint}")
    lines.append("the HorizontalPodAutoscaler needs prometheus-adapter with the rule in "
                 f"{out / 'base' / 'prometheus' / 'adapter-rules.yaml'}")
    lines.append(f"preview: kubectl kustomize {shlex.quote(str(out))}")
    lines.append(f"next:    kubectl apply -k {shlex.quote(str(out))}")
    return "\n".join(lines)


# -- YAML ---------------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_/$][A-Za-z0-9_./$-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _emit(value: Any, indent: int) -> List[str]:
    pad = " " * indent
    lines: List[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{pad}{_scalar(key)}:"
            if isinstance(item, (dict, list)) and item:
                lines.append(head)
                lines += _emit(item, indent + 2)
            else:
                lines.append(f"{head} {_empty(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = _emit(item, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                lines.append(f"{pad}- {_empty(item)}")
    else:
        lines.append(pad + _scalar(value))
    return lines


def _empty(item: Any) -> str:
    if isinstance(item, dict):
        return "{}"
    if isinstance(item, list):
        return "[]"
    return _scalar(item)


def to_yaml(document: Any, comments: Sequence[str] = ()) -> str:
    """One YAML document in block style, with ``# comments`` above it."""
    return "".join(f"# {c}\n" for c in comments) + "\n".join(_emit(document, 0)) + "\n"


def _write_yaml(path: Path, document: Any, comments: Sequence[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(document, comments), encoding="utf-8")
    return path
