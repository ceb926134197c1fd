"""deploy/ stays deployable: every manifest parses, the Kubernetes objects validate against the
Kubernetes schemas, and the pieces agree with each other and with the code.

No cluster, no Docker: the core Kubernetes kinds (and the pod templates inside KubeRay's
RayCluster) are validated offline with ``kubernetes-validate``, which ships the schemas;
KubeRay's own kinds are checked by hand; the cluster-launcher config against Ray's own schema
(shipped with ray). Cross-references: images, environment variables (``HEADSPEC_*`` must be
fields of :class:`service.settings.Settings`, with values it accepts), Services to pods and
ports, Secret/ConfigMap/PVC references, compose ``depends_on``, entry-point modes, the pinned
Ray version, and the sweep specs shipped in a ConfigMap.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.specifiers import SpecifierSet

from service.settings import Settings
from service.sweeps.spec import SweepSpec

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
LAUNCHER = DEPLOY / "ray-cluster-aws.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
INSTALL = DEPLOY / "install-headspec.sh"
# The oldest Kubernetes minor release the manifests must be valid for.
K8S_VERSION = "1.29"

# Kinds validated against the Kubernetes schemas; the CRDs (KubeRay) are checked by hand.
CORE_KINDS = {"Namespace", "Deployment", "StatefulSet", "Service", "Secret", "ConfigMap",
              "PersistentVolumeClaim", "Job", "CronJob", "ServiceAccount", "Ingress"}
CRD_KINDS = {"RayCluster", "RayJob"}
# Environment variables that are not headspec settings, and who reads them.
EXTERNAL_ENV = {
    "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGDATA",  # the postgres image
    "MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION",  # mlflow server (entrypoint.sh)
    "MLFLOW_SERVER_ALLOWED_HOSTS",
    "RAY_HEAD_ADDRESS",  # entrypoint.sh ray-worker
    "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",  # Ray's token authentication (nodes and Jobs clients)
    "RAY_ADDRESS", "PATH",
}
IMAGE_REPOSITORIES = {"headspec", "postgres"}
SHARED_ARTIFACT_DIR = "/data/artifacts"


# -- loading ---------------------------------------------------------------------------------


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def _load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in _load_all(path)]


def _objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _k8s_objects() if doc["kind"] == kind]


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set: the default."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)


def _pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod template) of every workload in deploy/k8s, KubeRay's included."""
    for _, doc in _k8s_objects():
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield where, doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            yield where, doc["spec"]["jobTemplate"]["spec"]["template"]
        elif doc["kind"] == "RayCluster":
            yield f"{where} head", doc["spec"]["headGroupSpec"]["template"]
            for group in doc["spec"]["workerGroupSpecs"]:
                yield f"{where} {group['groupName']}", group["template"]
        elif doc["kind"] == "RayJob" and "submitterPodTemplate" in doc["spec"]:
            yield f"{where} submitter", doc["spec"]["submitterPodTemplate"]


def _containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def _entrypoint_modes() -> set[str]:
    text = ENTRYPOINT.read_text()
    case = text[text.index('case "$mode" in'):text.index("esac")]
    modes = set()
    for label in re.findall(r"^\s{4}([\w|-]+)\)", case, flags=re.M):
        modes.update(label.split("|"))
    return modes


def _settings_field(name: str) -> str | None:
    if not name.startswith("HEADSPEC_"):
        return None
    return name.removeprefix("HEADSPEC_").lower()


def _check_env_names(names: list[str], where: str) -> None:
    for name in names:
        field = _settings_field(name)
        if field is not None:
            assert field in Settings.model_fields, (
                f"{where}: {name} is not a headspec setting (no field {field!r} in Settings)")
        else:
            assert name in EXTERNAL_ENV, f"{where}: {name} is neither HEADSPEC_* nor a known external one"


def _check_settings_values(values: dict[str, str], where: str) -> Settings:
    """The literal HEADSPEC_* values must be ones Settings accepts (types, choices)."""
    fields = {_settings_field(k): v for k, v in values.items() if _settings_field(k)}
    try:
        return Settings(_env_file=None, **fields)  # type: ignore[call-arg]
    except Exception as exc:  # pydantic's ValidationError names the field
        pytest.fail(f"{where}: {exc}")


def _yaml_paths_with_key(node: Any, key: str) -> Iterator[Any]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _yaml_paths_with_key(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _yaml_paths_with_key(item, key)


# -- every file ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_in_deploy_parses(path: Path) -> None:
    docs = _load_all(path)
    assert docs, f"{path} holds no document"
    assert all(isinstance(d, dict) for d in docs)


def test_deploy_has_what_the_issue_asks_for() -> None:
    for path in (DOCKERFILE, ENTRYPOINT, INSTALL, COMPOSE, LAUNCHER, K8S / "kustomization.yaml"):
        assert path.is_file(), path
    kinds = {doc["kind"] for _, doc in _k8s_objects()}
    assert kinds >= {"RayCluster", "RayJob", "Deployment", "Service", "Secret", "ConfigMap",
                     "StatefulSet", "PersistentVolumeClaim"}


# -- Kubernetes: schemas ---------------------------------------------------------------------


def _k8s_validate(doc: dict[str, Any], where: str) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{where}: {path}: {exc.message}")


@pytest.mark.parametrize(
    "where,doc",
    [(f"{p.name} {d['kind']}/{d['metadata']['name']}", d) for p, d in _k8s_objects()],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_kubernetes_objects_validate(where: str, doc: dict[str, Any]) -> None:
    assert {"apiVersion", "kind", "metadata"} <= doc.keys(), where
    assert doc["metadata"].get("name"), where
    if doc["kind"] in CRD_KINDS:
        assert doc["apiVersion"] == "ray.io/v1", where
        return
    assert doc["kind"] in CORE_KINDS, f"{where}: add {doc['kind']} to CORE_KINDS or CRD_KINDS"
    _k8s_validate(doc, where)


@pytest.mark.parametrize("where,template", list(_pod_templates()),
                         ids=lambda x: x if isinstance(x, str) else None)
def test_pod_templates_validate(where: str, template: dict[str, Any]) -> None:
    """The pod templates inside KubeRay's kinds are plain Kubernetes: validate them as such."""
    doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
    _k8s_validate(doc, where)


# -- Kubernetes: KubeRay by hand -------------------------------------------------------------


def _ray_cluster() -> dict[str, Any]:
    (cluster,) = _objects("RayCluster")
    return cluster


def test_raycluster_structure() -> None:
    spec = _ray_cluster()["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["template"]["spec"]["containers"], "the head needs its Ray container"
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), "rayStartParams are strings"
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert {6379, 8265, 10001} <= ports
    groups = spec["workerGroupSpecs"]
    assert len({g["groupName"] for g in groups}) == len(groups)
    gpu_groups = []
    for g in groups:
        assert isinstance(g["minReplicas"], int) and isinstance(g["maxReplicas"], int), g["groupName"]
        replicas = g.get("replicas", g["minReplicas"])
        assert 0 <= g["minReplicas"] <= replicas <= g["maxReplicas"], g["groupName"]
        assert g["maxReplicas"] >= 1, g["groupName"]
        assert all(isinstance(v, str) for v in g.get("rayStartParams", {}).values())
        ray_container = g["template"]["spec"]["containers"][0]
        gpus = ray_container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        if gpus:
            gpu_groups.append(g)
            assert int(gpus) >= 1
            assert ray_container["image"].endswith(":cuda"), "GPU workers run the CUDA image"
            tolerated = {t.get("key") for t in g["template"]["spec"].get("tolerations", [])}
            assert "nvidia.com/gpu" in tolerated
    assert len(gpu_groups) == 1, "one GPU worker group, with nvidia.com/gpu limits"
    assert gpu_groups[0]["minReplicas"] == 0, "the GPU group scales from zero"
    assert any(g not in gpu_groups for g in groups), "a CPU worker group"


def test_ray_token_auth_is_shared_by_the_cluster_and_the_service() -> None:
    auth = _ray_cluster()["spec"]["authOptions"]
    assert auth["mode"] == "token"
    secret = next(s for s in _objects("Secret") if s["metadata"]["name"] == auth["secretName"])
    assert "auth_token" in secret["stringData"], "KubeRay reads the key auth_token"
    (deployment,) = [d for d in _objects("Deployment") if d["metadata"]["name"] == "headspec"]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (auth["secretName"], "auth_token")
    services = _compose()["services"]
    ray_clients = [n for n, s in services.items()
                   if s.get("command", [""])[0] in ("ray-head", "ray-worker", "serve")]
    tokens = {services[n]["environment"].get("RAY_AUTH_TOKEN") for n in ray_clients}
    modes = {services[n]["environment"].get("RAY_AUTH_MODE") for n in ray_clients}
    assert modes == {"token"} and len(tokens) == 1 and None not in tokens, (modes, tokens)
    setup = "\n".join(yaml.safe_load(LAUNCHER.read_text())["setup_commands"])
    assert "export RAY_AUTH_MODE=token" in setup and "export RAY_AUTH_TOKEN=" in setup


def test_ray_version_is_pinned_once_and_fits_pyproject() -> None:
    pinned = re.search(r"^DEFAULT_RAY_VERSION=(\S+)$", INSTALL.read_text(), flags=re.M)
    assert pinned, "install-headspec.sh pins DEFAULT_RAY_VERSION"
    assert _ray_cluster()["spec"]["rayVersion"] == pinned.group(1), (
        "RayCluster rayVersion must equal the Ray the image installs (install-headspec.sh)")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (ray_dep,) = [d for d in deps if re.match(r"ray\b", d)]
    assert pinned.group(1) in SpecifierSet(ray_dep.split("]", 1)[-1]), f"{pinned.group(1)} vs {ray_dep}"


def test_rayjob_runs_a_spec_from_the_configmap_on_the_cluster() -> None:
    (job,) = _objects("RayJob")
    spec = job["spec"]
    assert spec["clusterSelector"]["ray.io/cluster"] == _ray_cluster()["metadata"]["name"]
    assert "rayClusterSpec" not in spec, "the RayJob uses the RayCluster, not a cluster of its own"
    words = spec["entrypoint"].split()
    assert not set(spec["entrypoint"]) & set(";&|`$<>\n"), (
        "KubeRay pastes the entrypoint into a shell line: keep it one plain command")
    assert words[0] == "/app/deploy/entrypoint.sh" and words[1] in _entrypoint_modes()
    spec_path = next(w for w in words if w.startswith("/specs/"))
    head = _ray_cluster()["spec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    (spec_volume,) = [n for n, p in mounts.items() if p == "/specs"]
    configmap = volumes[spec_volume]["configMap"]["name"]
    keys = {k for cm in _objects("ConfigMap") if cm["metadata"]["name"] == configmap for k in cm["data"]}
    assert spec_path.removeprefix("/specs/") in keys


def test_shipped_sweep_specs_validate_and_match_examples() -> None:
    shipped = [cm for cm in _objects("ConfigMap") if cm["metadata"]["name"] == "headspec-specs"]
    assert shipped
    for name, text in shipped[0]["data"].items():
        spec = yaml.safe_load(text)
        SweepSpec.model_validate(spec)
        example = ROOT / "examples" / name
        if example.is_file():
            assert spec == yaml.safe_load(example.read_text()), (
                f"deploy/k8s/sweep-specs.yaml {name} differs from examples/{name}: copy it again")


# -- Kubernetes: cross-references ------------------------------------------------------------


def _image_repository(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    return name.split("@")[0].split(":")[0]


def test_every_image_is_headspec_or_postgres() -> None:
    for where, template in _pod_templates():
        for c in _containers(template):
            assert _image_repository(c["image"]) in IMAGE_REPOSITORIES, f"{where}: {c['image']}"
    for name, service in _compose()["services"].items():
        image = _interpolate(service["image"])
        assert _image_repository(image) in IMAGE_REPOSITORIES, f"compose {name}: {image}"


def test_kubernetes_env_vars_are_settings_with_valid_values() -> None:
    for where, template in _pod_templates():
        for c in _containers(template):
            env = c.get("env", [])
            _check_env_names([e["name"] for e in env], f"{where} {c['name']}")
            literal = {e["name"]: e["value"] for e in env if "value" in e}
            _check_settings_values(literal, f"{where} {c['name']}")
            assert not c.get("envFrom"), f"{where}: name every variable (envFrom hides them from this test)"


def test_secret_and_configmap_references_exist() -> None:
    secrets = {s["metadata"]["name"]: set(s.get("stringData", {})) | set(s.get("data", {}))
               for s in _objects("Secret")}
    configmaps = {c["metadata"]["name"]: set(c.get("data", {})) for c in _objects("ConfigMap")}
    claims = {p["metadata"]["name"] for p in _objects("PersistentVolumeClaim")}
    for _, doc in _k8s_objects():
        for ref in _yaml_paths_with_key(doc, "secretKeyRef"):
            assert ref["key"] in secrets.get(ref["name"], set()), f"secret {ref['name']}/{ref['key']}"
        for ref in _yaml_paths_with_key(doc, "configMapKeyRef"):
            assert ref["key"] in configmaps.get(ref["name"], set()), f"configmap {ref['name']}/{ref['key']}"
    for where, template in _pod_templates():
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps, f"{where}: configmap {v['configMap']['name']}"
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets, f"{where}: secret {v['secret']['secretName']}"
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims, f"{where}: pvc of {v['name']}"
        templates = {t["metadata"]["name"] for t in _volume_claim_templates(where)}
        for c in _containers(template):
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes or m["name"] in templates, f"{where}: mount {m['name']}"


def _volume_claim_templates(where: str) -> list[dict[str, Any]]:
    kind, name = where.split()[0].split("/")
    return [t for s in _objects(kind) if s["metadata"]["name"] == name
            for t in s["spec"].get("volumeClaimTemplates", [])]


def test_services_select_pods_and_target_their_ports() -> None:
    workloads = [(w, t) for w, t in _pod_templates()]
    for service in _objects("Service"):
        name = service["metadata"]["name"]
        selector = service["spec"]["selector"]
        selected = [(w, t) for w, t in workloads
                    if selector.items() <= t.get("metadata", {}).get("labels", {}).items()]
        assert selected, f"Service {name} selects no pod template"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for where, template in selected:
                ports = [p for c in template["spec"]["containers"] for p in c.get("ports", [])]
                found = [p for p in ports if target in (p["containerPort"], p.get("name"))]
                assert found, f"Service {name} port {target} is no containerPort of {where}"


def test_every_service_address_used_exists() -> None:
    """URLs in env values (http://mlflow:5000, the Ray head's Jobs API) name real Services."""
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in _objects("Service")}
    ray_head = f"{_ray_cluster()['metadata']['name']}-head-svc"  # made by KubeRay
    services[ray_head] = {6379, 8265, 10001}
    for where, template in _pod_templates():
        for c in _containers(template):
            for e in c.get("env", []):
                for host, port in re.findall(r"://(?:[^@/]*@)?([a-z0-9.-]+):(\d+)", e.get("value", "")):
                    if host in ("127.0.0.1", "localhost"):
                        continue
                    assert int(port) in services.get(host, set()), f"{where}: {e['name']} -> {host}:{port}"
    secret_urls = [v for s in _objects("Secret") for v in s.get("stringData", {}).values()]
    for url in secret_urls:
        for host, port in re.findall(r"://(?:[^@/]*@)?([a-z0-9.-]+):(\d+)", url):
            assert int(port) in services.get(host, set()), f"Secret URL -> {host}:{port}"


def test_the_service_submits_to_the_ray_cluster_and_upgrades_the_schema() -> None:
    (deployment,) = [d for d in _objects("Deployment") if d["metadata"]["name"] == "headspec"]
    spec = deployment["spec"]["template"]["spec"]
    (serve,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in serve["env"]}
    settings = _check_settings_values({k: v for k, v in env.items() if v is not None}, "headspec")
    assert settings.launcher == "ray-jobs"
    assert settings.ray_dashboard_address == f"http://{_ray_cluster()['metadata']['name']}-head-svc:8265"
    assert settings.api_host == "0.0.0.0"
    assert serve["args"][0] == "serve"
    assert [c["args"][0] for c in spec.get("initContainers", [])] == ["db-upgrade"]


def _job_settings() -> tuple[str, ...]:
    """Settings the service hands to the drivers it submits (they override the head's own)."""
    from service.sweeps import launch

    return tuple(getattr(launch, "JOB_SETTINGS", ("mlflow_tracking_uri", "artifact_dir", "writers",
                                                   "checkpoint_every")))


def _literal_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_service_and_ray_head_agree_on_what_drivers_get() -> None:
    (deployment,) = [d for d in _objects("Deployment") if d["metadata"]["name"] == "headspec"]
    service = _check_settings_values(_literal_env(deployment["spec"]["template"]["spec"]["containers"][0]),
                                     "headspec")
    head_container = _ray_cluster()["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head = _check_settings_values(_literal_env(head_container), "ray head")
    services = _compose()["services"]
    compose_service = _check_settings_values(_compose_env(services["headspec"]), "compose headspec")
    compose_head = _check_settings_values(_compose_env(services["ray-head"]), "compose ray-head")
    for name in _job_settings():
        assert getattr(service, name) == getattr(head, name), f"k8s: {name} differs (service vs head)"
        assert getattr(compose_service, name) == getattr(compose_head, name), f"compose: {name} differs"


def test_artifact_dir_is_one_shared_volume_on_every_ray_node_and_the_service() -> None:
    for where, template in _pod_templates():
        if not where.startswith(("RayCluster", "Deployment/headspec")):
            continue
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        c = template["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env.get("HEADSPEC_ARTIFACT_DIR") == SHARED_ARTIFACT_DIR, where
        mounts = [m for m in c["volumeMounts"] if m["mountPath"] == SHARED_ARTIFACT_DIR]
        assert len(mounts) == 1, f"{where}: mount headspec-artifacts at {SHARED_ARTIFACT_DIR}"
        assert volumes[mounts[0]["name"]]["persistentVolumeClaim"]["claimName"] == "headspec-artifacts", where
    (claim,) = [p for p in _objects("PersistentVolumeClaim") if p["metadata"]["name"] == "headspec-artifacts"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_container_args_are_entrypoint_modes() -> None:
    modes = _entrypoint_modes()
    for where, template in _pod_templates():
        for c in _containers(template):
            if _image_repository(c["image"]) == "headspec" and "args" in c:
                assert "command" not in c, f"{where}: keep the image's entry point (tini + entrypoint.sh)"
                assert c["args"][0] in modes, f"{where}: {c['args'][0]} is no mode of deploy/entrypoint.sh"


def test_kustomization_lists_every_manifest_but_the_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    for name in listed:
        assert (K8S / name).is_file(), name
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk - {"secret.yaml"}, "secret.yaml is created by hand, the rest applied"
    assert [i["name"] for i in kustomization["images"]] == ["headspec"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for `kubectl kustomize`) not installed")
def test_kustomize_builds_and_renames_every_headspec_image(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = os.path.relpath(K8S, overlay)
    (overlay / "kustomization.yaml").write_text(
        f"resources:\n  - {base}\nimages:\n  - name: headspec\n    newName: registry.example/team/headspec\n")
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"headspec"}
    images = {img for d in docs for img in _yaml_paths_with_key(d, "image")}
    assert images == {"registry.example/team/headspec:latest", "registry.example/team/headspec:cuda",
                      "postgres:16-bookworm"}, images


# -- compose ---------------------------------------------------------------------------------


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: _interpolate(str(v)) for k, v in env.items()}


def test_compose_services_depend_on_services_that_exist_and_are_healthchecked() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        assert "healthcheck" in service, f"compose {name} has no healthcheck"
        depends = service.get("depends_on", {})
        for target in depends:
            assert target in services, f"compose {name} depends on unknown {target}"
            if isinstance(depends, dict):
                assert depends[target]["condition"] == "service_healthy", f"{name} -> {target}"


def test_compose_env_vars_are_settings_with_valid_values() -> None:
    for name, service in _compose()["services"].items():
        env = _compose_env(service)
        _check_env_names(list(env), f"compose {name}")
        _check_settings_values(env, f"compose {name}")


def test_compose_stack_is_wired_together() -> None:
    compose = _compose()
    services = compose["services"]
    modes = _entrypoint_modes()
    for name, service in services.items():
        if _image_repository(_interpolate(service["image"])) == "headspec":
            assert service["command"][0] in modes, f"compose {name}: {service['command'][0]}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"compose {name}: volume {source} not declared"
            else:
                assert (COMPOSE.parent / source).exists(), f"compose {name}: {source}"
    api = _compose_env(services["headspec"])
    settings = _check_settings_values(api, "compose headspec")
    assert settings.launcher == "ray-jobs"
    assert settings.ray_dashboard_address == "http://ray-head:8265"
    assert services["headspec"]["command"] == ["serve"], "serve mode runs `headspec db upgrade` first"
    assert "db_upgrade\n" in ENTRYPOINT.read_text().split("serve)", 1)[1].split(";;", 1)[0]
    for url_setting in ("HEADSPEC_DATABASE_URL", "HEADSPEC_MLFLOW_TRACKING_URI"):
        host = re.search(r"://(?:[^@/]*@)?([\w.-]+):", api[url_setting])
        assert host and host.group(1) in services, f"{url_setting} -> {api[url_setting]}"
    assert "--serve-artifacts" in ENTRYPOINT.read_text().split("mlflow-server)", 1)[1]
    ray_nodes = [n for n, s in services.items() if s.get("command", [""])[0] in ("ray-head", "ray-worker")]
    assert {"ray-head", "ray-worker"} <= set(ray_nodes)
    for name in [*ray_nodes, "headspec"]:
        env = _compose_env(services[name])
        assert env["HEADSPEC_ARTIFACT_DIR"] == SHARED_ARTIFACT_DIR, name
        assert f"artifacts:{SHARED_ARTIFACT_DIR}" in services[name]["volumes"], name
        if name in ray_nodes:
            assert env["HEADSPEC_RAY_ADDRESS"] == "auto", f"{name}: drivers must join the cluster"
    gpu = services["ray-gpu-worker"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "BASE" in gpu["build"]["args"]


def test_compose_variables_are_documented() -> None:
    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    example = (DEPLOY / "env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for var in used:
        assert re.search(rf"^{var}=", example, flags=re.M), f"{var} missing from deploy/env.example"
        assert f"`{var}`" in readme, f"{var} missing from README's table"


# -- the image -------------------------------------------------------------------------------


def test_dockerfile_stages_build_from_the_base_argument() -> None:
    text = DOCKERFILE.read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    froms = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    assert froms, "no FROM"
    before = lines[:froms[0]]
    assert any(re.match(r"ARG BASE=\S+", ln) for ln in before), "ARG BASE=<default> before the first FROM"
    stages: set[str] = set()
    for i in froms:
        words = lines[i].split()
        source = words[1]
        assert source in ("${BASE}", "$BASE") or source in stages, f"{lines[i]}: build from ${{BASE}}"
        if len(words) >= 4 and words[2].upper() == "AS":
            stages.add(words[3])
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0"), "the image runs as a non-root user"
    entry = re.search(r"^ENTRYPOINT\s+(\[.*\])", text, flags=re.M)
    assert entry and "/app/deploy/entrypoint.sh" in json.loads(entry.group(1))
    assert "install-headspec.sh" in text


def test_cpu_and_cuda_images_share_one_distribution_release() -> None:
    """Ray refuses a node whose Python differs from the head's down to the patch version: the
    CPU and CUDA bases must come from one release (its python3 is fixed for its lifetime)."""
    base = re.search(r"^ARG BASE=(\S+)$", DOCKERFILE.read_text(), flags=re.M)
    assert base, "ARG BASE=<default>"
    release = base.group(1).replace(":", "").replace(".", "")  # ubuntu:24.04 -> ubuntu2404
    texts = [COMPOSE, DEPLOY / "env.example", ROOT / "README.md", DOCKERFILE]
    cuda_bases = re.findall(r"nvidia/cuda:[\w.-]*\w", "\n".join(p.read_text() for p in texts))
    assert cuda_bases
    for cuda in cuda_bases:
        assert cuda.replace(".", "").endswith(release), f"{cuda} is not on {base.group(1)}"


def test_scripts_exist_are_executable_and_shell() -> None:
    for script in (ENTRYPOINT, INSTALL):
        assert os.access(script, os.X_OK), f"{script} is not executable (git add keeps the bit)"
        assert script.read_text().startswith("#!/usr/bin/env bash\n")
        if shutil.which("bash"):
            assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script
    assert _entrypoint_modes() >= {"serve", "db-upgrade", "ray-head", "ray-worker", "driver", "run",
                                   "mlflow-server"}


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore, "allow-list: everything else stays out of the context (.venv, databases)"
    kept = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    needed = {p.rstrip("*") for p in packages["include"]} | {"pyproject.toml", "constraints.txt", "README.md",
                                                              "alembic", "deploy"}
    assert needed <= kept, needed - kept


# -- the Ray cluster launcher ----------------------------------------------------------------


def test_cluster_launcher_config_validates_against_rays_schema() -> None:
    spec = importlib.util.find_spec("ray")
    assert spec is not None and spec.submodule_search_locations
    schema_path = Path(next(iter(spec.submodule_search_locations))) / "autoscaler" / "ray-schema.json"
    config = yaml.safe_load(LAUNCHER.read_text())
    jsonschema.validate(config, json.loads(schema_path.read_text()))


def test_cluster_launcher_node_types_and_commands() -> None:
    config = yaml.safe_load(LAUNCHER.read_text())
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert sum(t.get("min_workers", 0) for t in types.values()) <= config["max_workers"]
    for name, node_type in types.items():
        assert node_type.get("min_workers", 0) <= node_type.get("max_workers", 0), name
    workers = {n: t for n, t in types.items() if n != config["head_node_type"]}
    assert any(t["resources"].get("GPU", 0) > 0 for t in workers.values()), "a GPU worker type"
    assert any(t["resources"].get("GPU", 0) == 0 for t in workers.values()), "a CPU worker type"
    setup = "\n".join(config["setup_commands"])
    assert "deploy/install-headspec.sh" in setup
    exported = re.findall(r"export (\w+)=", setup)
    _check_env_names(exported, "ray-cluster-aws.yaml setup_commands")
    assert "HEADSPEC_RAY_ADDRESS" in exported
    assert any("--head" in c for c in config["head_start_ray_commands"])
    assert any("$RAY_HEAD_IP" in c for c in config["worker_start_ray_commands"])
