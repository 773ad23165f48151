"""conf/k8s, the kustomize base, checked offline: Kubernetes schemas, names that refer to one
another, ports and paths against the app and nginx, files, images; no cluster needed."""

import pwd
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv

from conftest import close_app
import stack
from svc import create_app
from svc.config import Config

pytestmark = pytest.mark.static

ROOT = stack.ROOT
K8S = ROOT / "conf" / "k8s"
NGINX = ROOT / "conf" / "nginx"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
TEMPLATE = stack.NGINX_TEMPLATE.read_text()
TEMPLATE_VARS = set(re.findall(r"\$\{([A-Z_]+)\}", TEMPLATE))
GUNICORN_ENV = set(re.findall(r'os\.environ\.get\("([A-Z_]+)"',
                              (ROOT / "conf" / "gunicorn.conf.py").read_text()))

# The oldest and the newest Kubernetes minor whose schemas the installed kubernetes-validate
# ships (1.25 and 1.37 with kubernetes-validate 1.37.0): the base must be valid in both.
VERSIONS = sorted({kv.all_versions()[0], kv.latest_version()},
                  key=lambda v: tuple(map(int, v.split("."))))
CURRENT_API = {"ConfigMap": "v1", "Secret": "v1", "Service": "v1", "Deployment": "apps/v1",
               "Job": "batch/v1", "HorizontalPodAutoscaler": "autoscaling/v2",
               "PodDisruptionBudget": "policy/v1", "Ingress": "networking.k8s.io/v1",
               "NetworkPolicy": "networking.k8s.io/v1", "Cluster": "postgresql.cnpg.io/v1"}
CNPG = "postgresql.cnpg.io/v1"

# Set only to be spliced into the URLs above through Kubernetes' $(VAR) expansion.
HELPER_ENV = {"DB_APP_USER", "DB_APP_PASSWORD", "REDIS_PASSWORD"}
# The edge's variables beyond the template's: its own namespace (to spell Redis's full name),
# and the Redis password the edge will log in with (edge issue).
EDGE_EXTRA_ENV = {"POD_NAMESPACE", "REDIS_PASSWORD"}


# ---- a small reading of the kustomization: resources, generators, images ------------------

def kustomization(folder):
    """The parsed kustomization.yaml of `folder`."""
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def env_file(path):
    """KEY=VALUE lines of a kustomize `envs` file; # comments and blank lines skipped."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def generated(folder, entry, kind):
    """The ConfigMap or Secret a generator entry makes, named without kustomize's hash."""
    data = {}
    for literal in entry.get("literals", []):
        key, value = literal.split("=", 1)
        data[key] = value
    for name in entry.get("envs", []):
        data.update(env_file(folder / name))
    for name in entry.get("files", []):
        key, _, path = name.rpartition("=")
        data[key or Path(path).name] = (folder / path).read_text()
    doc = {"apiVersion": "v1", "kind": kind,
           "metadata": {"name": entry["name"], **({"labels": entry["options"]["labels"]}
                                                  if "labels" in entry.get("options", {}) else {})}}
    if kind == "Secret":
        return {**doc, "type": entry.get("type", "Opaque"), "stringData": data}
    return {**doc, "data": data}


def named_files(folder):
    """Every file a kustomization reads from its own folder, kustomization.yaml included."""
    k = kustomization(folder)
    names = {"kustomization.yaml", *k.get("configurations", [])}
    names |= {r for r in k.get("resources", []) if (folder / r).is_file()}
    for entry in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
        names |= set(entry.get("envs", []))
        names |= {f.rpartition("=")[2] for f in entry.get("files", [])}
    return names


def render(folder):
    """What the kustomization in `folder` yields, generators and sub-kustomizations included
    (generated names without their hash; `images` applied)."""
    k = kustomization(folder)
    docs = []
    for resource in k.get("resources", []):
        path = (folder / resource).resolve()
        docs += render(path) if path.is_dir() else [
            d for d in yaml.safe_load_all(path.read_text()) if d]
    docs += [generated(folder, e, "ConfigMap") for e in k.get("configMapGenerator", [])]
    docs += [generated(folder, e, "Secret") for e in k.get("secretGenerator", [])]
    images = {i["name"]: i for i in k.get("images", [])}
    for _, spec in pod_specs(docs):
        for c in containers(spec):
            if c["image"] in images:
                new = images[c["image"]]
                c["image"] = f"{new.get('newName', c['image'])}:{new['newTag']}"
    return docs


def pod_specs(docs):
    """(workload, pod spec) of every Deployment and Job."""
    return [(d, d["spec"]["template"]["spec"]) for d in docs if d["kind"] in ("Deployment", "Job")]


def containers(spec):
    """Init containers, then containers, of a pod spec."""
    return spec.get("initContainers", []) + spec["containers"]


DOCS = render(K8S)
BY_KIND = {}
for _doc in DOCS:
    BY_KIND.setdefault(_doc["kind"], {})[_doc["metadata"]["name"]] = _doc
(CLUSTER,) = BY_KIND["Cluster"].values()
DB = CLUSTER["metadata"]["name"]
# What CloudNativePG creates for this Cluster (documented): the owner's Secret, the Services.
OPERATOR_SECRETS = {f"{DB}-app"}
OPERATOR_SERVICES = {f"{DB}-rw", f"{DB}-ro", f"{DB}-r"}
# The operator's Secret as it will look, for expanding env values (the owner of initdb).
OPERATOR_SECRET_DATA = {f"{DB}-app": {
    "uri": "postgresql://{0}:pw@{1}-rw.ns:5432/{2}".format(
        CLUSTER["spec"]["bootstrap"]["initdb"]["owner"], DB,
        CLUSTER["spec"]["bootstrap"]["initdb"]["database"])}}


def workload(name):
    """The Deployment or Job called `name`."""
    return BY_KIND.get("Deployment", {}).get(name) or BY_KIND["Job"][name]


def container(name, container_name):
    """One container (or init container) of a workload's pod."""
    spec = workload(name)["spec"]["template"]["spec"]
    return next(c for c in containers(spec) if c["name"] == container_name)


def pod_labels(name):
    return workload(name)["spec"]["template"]["metadata"]["labels"]


def selects(selector, labels):
    """Whether matchLabels `selector` picks pods with `labels`."""
    return bool(selector) and selector.items() <= labels.items()


def expand(c):
    """A container's environment as Kubernetes builds it: values from the base's Secrets and
    ConfigMaps (placeholders) or the operator's, $(VAR) only from variables defined above."""
    env = {}
    for ref in c.get("envFrom", []):
        env.update(BY_KIND["ConfigMap"][ref["configMapRef"]["name"]]["data"])
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                      lambda m: env.get(m.group(1), m.group(0)), var["value"])
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[var["name"]] = "ns"
            continue
        ref = source["secretKeyRef"]
        data = (OPERATOR_SECRET_DATA.get(ref["name"]) or
                BY_KIND["Secret"][ref["name"]]["stringData"])
        if ref["key"] in data or not ref.get("optional"):
            env[var["name"]] = data[ref["key"]]
    return env


def port_number(c, port):
    """A container port by name or number."""
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in c["ports"] if p["name"] == port)


def dockerfile_stage(name):
    match = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)
    assert match, f"no stage {name}"
    return match.group(1)


@pytest.fixture(scope="module")
def app_rules():
    """The Flask app's routes (its url_map), from an app whose servers need not exist."""
    app = create_app({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
                      "REDIS_URL": "redis://127.0.0.1:1/0"})
    try:
        return {rule.rule for rule in app.url_map.iter_rules()}
    finally:
        close_app(app)


# ---- files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("folder", [K8S, NGINX], ids=["conf/k8s", "conf/nginx"])
def test_every_file_in_the_folder_is_named_by_its_kustomization(folder):
    on_disk = {p.name for p in folder.iterdir() if p.is_file()}
    assert on_disk == named_files(folder)
    assert not [p for p in folder.iterdir() if p.is_dir()], "sub-folders are not read"


def test_the_base_reaches_the_nginx_files_through_their_own_kustomization():
    assert "../nginx" in kustomization(K8S)["resources"]
    (conf,) = kustomization(NGINX)["configMapGenerator"]
    assert conf["name"] in BY_KIND["ConfigMap"]


def test_edge_configmap_holds_every_file_the_edge_image_copies_and_is_mounted_there():
    copy = re.search(r"^COPY (conf/nginx/?) (\S+)$", dockerfile_stage("edge"), re.M)
    source, target = copy.groups()
    copied = {p.name for p in (ROOT / source).iterdir() if p.is_file()} - {"kustomization.yaml"}
    (conf,) = kustomization(NGINX)["configMapGenerator"]
    assert set(BY_KIND["ConfigMap"][conf["name"]]["data"]) == copied
    edge = container("tasks-edge", "edge")
    volumes = {v["name"]: v for v in workload("tasks-edge")["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in edge["volumeMounts"] if volumes[m["name"]].get("configMap")]
    assert volumes[mount["name"]]["configMap"]["name"] == conf["name"]
    assert mount["mountPath"].rstrip("/") == target.rstrip("/") == expand(edge)["CONF_DIR"]


def test_committed_secret_values_are_placeholders():
    for entry in kustomization(K8S)["secretGenerator"]:
        for name in entry["envs"]:
            values = env_file(K8S / name)
            assert values
            for key, value in values.items():
                assert key == "username" or value.startswith("change-me"), (name, key)
                assert re.fullmatch(r"[A-Za-z0-9_.~-]+", value), "spliced into URLs: URL-safe"


# ---- schemas and API versions -----------------------------------------------------------------

def test_only_current_api_versions():
    for d in DOCS:
        assert CURRENT_API[d["kind"]] == d["apiVersion"], d["metadata"]["name"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_kubernetes_strictly(version):
    checked = 0
    for doc in DOCS:
        if doc["apiVersion"] == CNPG:
            continue  # a custom resource: no schema here, see the next test
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked == len(DOCS) - 1


def test_strict_validation_rejects_an_unknown_field():
    app = yaml.safe_load(yaml.safe_dump(workload("tasks-app")))
    app["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kv.ValidationError):
        kubernetes_validate.validate(app, VERSIONS[-1], strict=True)


def test_cloudnativepg_cluster_has_what_the_operator_requires_and_the_app_uses():
    spec = CLUSTER["spec"]
    assert CLUSTER["apiVersion"] == CNPG and CLUSTER["kind"] == "Cluster"
    assert isinstance(spec["instances"], int) and spec["instances"] >= 1
    assert re.fullmatch(r"\d+(Mi|Gi|Ti)", spec["storage"]["size"])
    initdb = spec["bootstrap"]["initdb"]
    assert initdb["database"] == "tasks" and initdb["owner"] == "tasks"
    (role,) = spec["managed"]["roles"]
    assert role["name"] == "tasks_app" and role["login"] is True
    assert role.get("ensure", "present") == "present" and not role.get("superuser")
    secret = BY_KIND["Secret"][role["passwordSecret"]["name"]]
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert secret["stringData"]["username"] == role["name"] and secret["stringData"]["password"]


# ---- references between manifests ----------------------------------------------------------------

def referenced(kind):
    """(referrer, name) of every Secret or ConfigMap a manifest names."""
    refs = []
    key = {"Secret": ("secretKeyRef", "secretRef"),
           "ConfigMap": ("configMapKeyRef", "configMapRef")}[kind]
    for doc, spec in pod_specs(DOCS):
        owner = doc["metadata"]["name"]
        for c in containers(spec):
            refs += [(owner, v["valueFrom"][key[0]]["name"]) for v in c.get("env", [])
                     if key[0] in v.get("valueFrom", {})]
            refs += [(owner, e[key[1]]["name"]) for e in c.get("envFrom", []) if key[1] in e]
        for volume in spec.get("volumes", []):
            if kind == "ConfigMap" and "configMap" in volume:
                refs.append((owner, volume["configMap"]["name"]))
            if kind == "Secret" and "secret" in volume:
                refs.append((owner, volume["secret"]["secretName"]))
    if kind == "Secret":
        refs += [(DB, r["passwordSecret"]["name"]) for r in CLUSTER["spec"]["managed"]["roles"]]
    return refs


@pytest.mark.parametrize("kind", ["Secret", "ConfigMap"])
def test_every_secret_and_configmap_named_exists_in_the_base_or_is_the_operators(kind):
    known = set(BY_KIND[kind]) | (OPERATOR_SECRETS if kind == "Secret" else set())
    refs = referenced(kind)
    assert refs
    assert not [r for r in refs if r[1] not in known]
    assert set(BY_KIND[kind]) <= {name for _, name in refs}, "generated but never used"


def test_env_values_expand_only_from_variables_defined_above_them():
    for doc, spec in pod_specs(DOCS):
        for c in containers(spec):
            unresolved = {k: v for k, v in expand(c).items() if "$(" in v}
            assert not unresolved, (doc["metadata"]["name"], c["name"], unresolved)


def test_services_select_pods_and_name_their_ports():
    for name, service in BY_KIND["Service"].items():
        pods = [d for d, _ in pod_specs(DOCS)
                if selects(service["spec"]["selector"], pod_labels(d["metadata"]["name"]))]
        assert [d["metadata"]["name"] for d in pods] == [name]
        (c,) = [c for c in pods[0]["spec"]["template"]["spec"]["containers"]]
        for port in service["spec"]["ports"]:
            assert port_number(c, port["targetPort"])


def service_port(name, port):
    """The container port behind port `port` (number or name) of Service `name`."""
    service = BY_KIND["Service"][name]
    (sp,) = [p for p in service["spec"]["ports"] if port in (p["port"], p["name"])]
    (c,) = workload(name)["spec"]["template"]["spec"]["containers"]
    return port_number(c, sp["targetPort"])


def test_addresses_in_urls_and_env_name_services_of_the_base_or_the_operators():
    for name in ("tasks-app", "tasks-migrate"):
        for c in containers(workload(name)["spec"]["template"]["spec"]):
            env = expand(c)
            if "DATABASE_URL" in env:
                url = urlsplit(env["DATABASE_URL"])
                assert url.hostname == f"{DB}-rw" and url.port == 5432 and url.path == "/tasks"
                assert url.username == CLUSTER["spec"]["managed"]["roles"][0]["name"]
            if "MIGRATE_DATABASE_URL" in env:
                owner = urlsplit(env["MIGRATE_DATABASE_URL"])
                assert owner.hostname.split(".")[0] in OPERATOR_SERVICES
            if "REDIS_URL" in env:
                url = urlsplit(env["REDIS_URL"])
                assert service_port(url.hostname, url.port) == 6379
                assert url.password == expand(container("tasks-redis", "redis"))["REDIS_PASSWORD"]
    edge = expand(container("tasks-edge", "edge"))
    (address,) = re.findall(r"server (\S+?)[ ;]", edge["APP_SERVERS"])
    host, port = address.rsplit(":", 1)
    assert service_port(host, int(port)) == port_number(container("tasks-app", "app"), "http")
    assert edge["REDIS_HOST"] == "tasks-redis.ns.svc.cluster.local"
    assert service_port("tasks-redis", int(edge["REDIS_PORT"])) == 6379
    assert edge["REDIS_PASSWORD"] == expand(container("tasks-redis", "redis"))["REDIS_PASSWORD"]
    (ingress,) = BY_KIND["Ingress"].values()
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert service_port(backend["name"], backend["port"]["name"]) == int(edge["LISTEN"])


def test_autoscaler_and_disruption_budgets_point_at_the_deployments():
    (hpa,) = BY_KIND["HorizontalPodAutoscaler"].values()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "tasks-app")
    assert "replicas" not in workload("tasks-app")["spec"], "the HPA owns the replica count"
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    for pdb in BY_KIND["PodDisruptionBudget"].values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(pdb["metadata"]["name"]))


def policy_for(labels):
    (policy,) = [p for p in BY_KIND["NetworkPolicy"].values()
                 if selects(p["spec"]["podSelector"]["matchLabels"], labels)]
    return policy


def sources(policy):
    """Names of the base's workloads (or CloudNativePG's pods) a policy lets in, and the
    namespaces it lets in."""
    pods, namespaces = set(), set()
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            if "namespaceSelector" in peer:
                labels = peer["namespaceSelector"]["matchLabels"]
                namespaces.add(labels["kubernetes.io/metadata.name"])
                continue
            selector = peer["podSelector"]["matchLabels"]
            matched = {d["metadata"]["name"] for d, _ in pod_specs(DOCS)
                       if selects(selector, d["spec"]["template"]["metadata"]["labels"])}
            assert matched or selector == {"cnpg.io/cluster": DB}, selector
            pods |= matched or {DB}
    return pods, namespaces


def test_network_policies_let_in_only_whom_the_design_says():
    assert sources(policy_for(pod_labels("tasks-app"))) == ({"tasks-edge"}, set())
    assert sources(policy_for(pod_labels("tasks-edge"))) == (set(), {"ingress-nginx"})
    assert sources(policy_for(pod_labels("tasks-redis"))) == (
        {"tasks-app", "tasks-edge", "tasks-migrate"}, set())
    # CloudNativePG labels its pods cnpg.io/cluster=<name>; its operator must reach them too.
    assert sources(policy_for({"cnpg.io/cluster": DB})) == (
        {"tasks-app", "tasks-migrate", DB}, {"cnpg-system"})
    for policy in BY_KIND["NetworkPolicy"].values():
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        selector = policy["spec"]["podSelector"]["matchLabels"]
        target = [d for d, _ in pod_specs(DOCS)
                  if selects(selector, pod_labels(d["metadata"]["name"]))]
        for rule in policy["spec"]["ingress"]:
            for port in rule.get("ports", []):
                assert all(port_number(c, port["port"]) for d in target
                           for c in d["spec"]["template"]["spec"]["containers"])


# ---- the app and the edge, as the code and the images have them ----------------------------------

def test_app_probes_hit_app_routes_on_the_port_gunicorn_binds(app_rules):
    app = container("tasks-app", "app")
    port = port_number(app, "http")
    assert expand(app)["GUNICORN_BIND"] == f"0.0.0.0:{port}"
    assert f"EXPOSE {port}" in dockerfile_stage("app")
    assert app["readinessProbe"]["httpGet"]["path"] == "/api/health"
    assert app["livenessProbe"]["httpGet"]["path"] == "/api/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = app[probe]["httpGet"]
        assert get["path"] in app_rules and port_number(app, get["port"]) == port


def test_edge_listens_where_its_service_probes_and_image_say():
    edge = container("tasks-edge", "edge")
    listen = int(expand(edge)["LISTEN"])
    assert "listen ${LISTEN};" in TEMPLATE
    assert port_number(edge, "http") == listen and f"EXPOSE {listen}" in dockerfile_stage("edge")
    for probe in ("readinessProbe", "livenessProbe"):
        assert port_number(edge, edge[probe]["tcpSocket"]["port"]) == listen
    assert service_port("tasks-edge", "http") == listen


def test_edge_env_fills_the_nginx_template_and_its_state_dir_is_writable():
    edge = container("tasks-edge", "edge")
    env = expand(edge)
    assert {"APP_SERVERS", "REDIS_HOST", "REDIS_PORT", "RESOLVER", "LISTEN"} <= set(env)
    assert set(env) <= TEMPLATE_VARS | EDGE_EXTRA_ENV, set(env) - TEMPLATE_VARS - EDGE_EXTRA_ENV
    mounts = {m["mountPath"]: m["name"] for m in edge["volumeMounts"]}
    init = container("tasks-edge", "log-to-stdout")
    assert env["STATE_DIR"] in mounts and expand(init)["STATE_DIR"] == env["STATE_DIR"]
    assert {m["mountPath"] for m in init["volumeMounts"]} == {env["STATE_DIR"]}
    assert f"STATE_DIR={env['STATE_DIR']}" in dockerfile_stage("edge")


def test_rendered_config_passes_nginx_t_with_the_k8s_values(tmp_path):
    env = expand(container("tasks-edge", "edge"))
    values = {k: v for k, v in env.items() if k in TEMPLATE_VARS - {"STATE_DIR", "CONF_DIR"}}
    # nginx resolves the upstream's and the resolver's names at start; the cluster's names do not
    # resolve here, so a name that does stands in for each (REDIS_HOST is looked up per request).
    values["APP_SERVERS"] = values["APP_SERVERS"].replace("tasks-app:", "localhost:")
    values["RESOLVER"] = "localhost"
    conf = stack.render_nginx(tmp_path, values)
    result = subprocess.run([stack.nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(conf)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_app_env_names_are_ones_the_code_reads():
    known = {f.name for f in fields(Config)} | GUNICORN_ENV | HELPER_ENV
    for doc, spec in pod_specs(DOCS):
        if doc["metadata"]["name"] not in ("tasks-app", "tasks-migrate"):
            continue
        for c in containers(spec):
            env = expand(c)
            assert "DATABASE_URL" in env and set(env) <= known, (c["name"], set(env) - known)


def test_app_has_writable_dirs_for_metrics_and_tmp():
    app = container("tasks-app", "app")
    volumes = {v["name"]: v for v in workload("tasks-app")["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in app["volumeMounts"]}
    assert "emptyDir" in mounts[expand(app)["PROMETHEUS_MULTIPROC_DIR"]]
    assert "emptyDir" in mounts["/tmp"]


def test_app_waits_for_the_migrate_job_which_runs_as_the_schema_owner():
    wait = container("tasks-app", "wait-for-migrations")
    script = wait["command"][-1]
    assert wait["command"][:2] == ["sh", "-c"] and "until " in script
    assert "python -m svc migrate list" in script and "'^pending'" in script
    job = workload("tasks-migrate")
    migrate = container("tasks-migrate", "migrate")
    assert migrate["command"][-1] == COMPOSE["services"]["migrate"]["command"][-1]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    assert job["spec"]["backoffLimit"] >= 3 and job["spec"]["ttlSecondsAfterFinished"]
    for c in (wait, migrate):
        owner = next(v for v in c["env"] if v["name"] == "MIGRATE_DATABASE_URL")
        assert owner["valueFrom"]["secretKeyRef"] == {"name": f"{DB}-app", "key": "uri"}
    app_url = expand(container("tasks-app", "app"))["DATABASE_URL"]
    assert expand(wait)["DATABASE_URL"] == expand(migrate)["DATABASE_URL"] == app_url


def test_redis_asks_for_the_shared_password_and_keeps_nothing_on_disk():
    redis = container("tasks-redis", "redis")
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    assert expand(redis)["REDIS_PASSWORD"] == expand(redis)["REDISCLI_AUTH"]
    assert workload("tasks-redis")["spec"]["replicas"] == 1
    assert workload("tasks-redis")["spec"]["strategy"]["type"] == "Recreate"


def test_images_are_the_ones_compose_builds():
    compose_images = {COMPOSE["services"][s]["build"]["target"]: COMPOSE["services"][s]["image"]
                      for s in ("app", "nginx")}
    expected = {"tasks-app": compose_images["app"], "tasks-migrate": compose_images["app"],
                "tasks-edge": compose_images["edge"], "tasks-redis": "redis"}
    for doc, spec in pod_specs(DOCS):
        for c in containers(spec):
            assert c["image"].split(":")[0] == expected[doc["metadata"]["name"]], c["name"]
    assert COMPOSE["services"]["redis"]["image"].split(":")[0] == "redis"


def test_every_pod_is_hardened_and_sized():
    for doc, spec in pod_specs(DOCS):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert isinstance(pod["runAsUser"], int) and pod["runAsUser"] > 0
        assert spec["automountServiceAccountToken"] is False
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (c["name"], kind)


def test_pods_run_as_the_users_the_images_declare():
    uid = re.search(r"^ARG UID=(\d+)$", dockerfile_stage("app"), re.M).group(1)
    for name in ("tasks-app", "tasks-migrate"):
        pod = workload(name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == int(uid)
    # The edge image (Debian, as here) runs as www-data: a name, so the pod must give its number.
    assert re.findall(r"^USER (\S+)$", dockerfile_stage("edge"), re.M)[-1] == "www-data"
    edge = workload("tasks-edge")["spec"]["template"]["spec"]["securityContext"]
    assert edge["runAsUser"] == pwd.getpwnam("www-data").pw_uid


# ---- the real build, with the kustomize built into kubectl -----------------------------------

KUBECTL = shutil.which("kubectl")


@pytest.fixture(scope="module")
def built():
    """`kubectl kustomize conf/k8s` (kubectl's built-in kustomize; reaches no cluster)."""
    if not KUBECTL:
        pytest.skip("kubectl is not installed: the build itself is not checked here")
    result = subprocess.run([KUBECTL, "kustomize", str(K8S)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def unhashed(doc):
    """A generated object's name without kustomize's content hash."""
    name = doc["metadata"]["name"]
    return re.sub(r"-[a-z0-9]{10}$", "", name) if doc["kind"] in ("ConfigMap", "Secret") else name


def test_kustomize_builds_what_the_test_reads(built):
    assert sorted((d["kind"], unhashed(d)) for d in built) == \
        sorted((d["kind"], d["metadata"]["name"]) for d in DOCS)
    for d in built:
        if d["kind"] in ("ConfigMap", "Secret"):
            assert d["metadata"]["name"] != unhashed(d), "generated names carry a content hash"
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tasks-svc"


@pytest.mark.parametrize("version", VERSIONS)
def test_kustomize_output_is_valid_kubernetes_strictly(built, version):
    for doc in built:
        if doc["apiVersion"] != CNPG:
            kubernetes_validate.validate(doc, version, strict=True)


def test_kustomize_fills_the_hashed_names_in_everywhere_including_the_cluster(built):
    names = {(d["kind"], d["metadata"]["name"]) for d in built}
    text = yaml.safe_dump_all(built)
    for kind in ("ConfigMap", "Secret"):
        for original in BY_KIND[kind]:
            (hashed,) = [n for k, n in names
                         if k == kind and re.fullmatch(rf"{original}-[a-z0-9]{{10}}", n)]
            # Every reference to the generated object now uses its hashed name.
            assert not re.search(rf"name: {original}\n", text), original
            assert f"name: {hashed}\n" in text
    (cluster,) = [d for d in built if d["kind"] == "Cluster"]
    secret = cluster["spec"]["managed"]["roles"][0]["passwordSecret"]["name"]
    assert ("Secret", secret) in names
