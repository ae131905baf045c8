#!/usr/bin/env python3
"""Writes each Outpost subchart's values.yaml, values.schema.json and README values table
(deploy/helm/outpost/charts/<name>) from the one spec below: edit the spec, run
`python3 scripts/helm-values.py deploy/helm/outpost`, commit the three files."""
import json, os, sys, collections

ROOT = sys.argv[1]
O = collections.OrderedDict

FREE_OBJ = {"type": "object"}
FREE_ARR = {"type": "array"}
PEERS = {"type": "array", "items": {"type": "object"}}
CRED = lambda desc: {"type": "object", "additionalProperties": False,
                     "properties": {"existingSecret": {"type": "string"},
                                    "key": {"type": "string", "minLength": 1}},
                     "required": ["existingSecret", "key"]}
QTY = {"anyOf": [{"type": "string"}, {"type": "number"}]}

# Tracing (libs/telemetry): off unless an OTLP endpoint is set here or in
# global.otel; the chart renders the standard OTEL_* variables.
OTEL = [
    ("otel.exporterEndpoint", "", {"type": "string", "pattern": "^$|^https?://[^@/]+(/.*)?$"}, "OTLP endpoint the service exports its traces to (`OTEL_EXPORTER_OTLP_ENDPOINT`, e.g. `http://otel-collector:4318`); `global.otel.exporterEndpoint` when empty. Tracing is off when both are empty. No credentials in the URL: they go in `otel.headers`."),
    ("otel.protocol", "", {"type": "string", "enum": ["", "http/protobuf", "grpc"]}, "OTLP protocol (`OTEL_EXPORTER_OTLP_PROTOCOL`); `global.otel.protocol`, then `http/protobuf`, when empty."),
    ("otel.serviceNamePrefix", "", {"type": "string", "pattern": "^[A-Za-z0-9_.-]*$"}, "Prefix of the service name of the spans: `OTEL_SERVICE_NAME` is the prefix and the chart's name; `global.otel.serviceNamePrefix` when empty."),
    ("otel.resourceAttributes", {}, {"type": "object", "propertyNames": {"pattern": "^[A-Za-z0-9_./-]+$"}, "additionalProperties": {"type": "string", "pattern": "^[^,=]*$"}}, "More resource attributes of the spans (`OTEL_RESOURCE_ATTRIBUTES`, e.g. `deployment.environment.name: prod`), over `global.otel.resourceAttributes`; the pod's name and namespace are always added."),
    ("otel.sampler", "", {"type": "string", "enum": ["", "always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"]}, "Sampler (`OTEL_TRACES_SAMPLER`); `global.otel.sampler`, then `parentbased_always_on`, when empty."),
    ("otel.samplerArg", "", {"anyOf": [{"type": "string", "pattern": "^$|^(0(\\.[0-9]+)?|1(\\.0+)?)$"}, {"type": "number", "minimum": 0, "maximum": 1}]}, "Sampler argument (`OTEL_TRACES_SAMPLER_ARG`, the ratio of the `traceidratio` samplers, e.g. `0.1`); `global.otel.samplerArg` when empty."),
    ("otel.headers.existingSecret", "", None, "Secret with the exporter's headers (`OTEL_EXPORTER_OTLP_HEADERS`, `key=value,...`, e.g. a tracing vendor's API key), passed as a Secret reference; `global.otel.headers` when empty."),
    ("otel.headers.key", "headers", None, "Key of that Secret."),
]

def common(port_desc, replicas=1, cpu="100m", mem="128Mi", lim_mem="512Mi", ingress_desc="", broker_egress=True):
    rows = [
        ("enabled", True, {"type": "boolean"}, "Install this chart (read by the umbrella chart)."),
        ("fullnameOverride", "", {"type": "string"}, "Name of the chart's objects instead of `<release>-<chart>`."),
        ("replicas", replicas, {"type": "integer", "minimum": 0}, "Pod replicas."),
        ("image.registry", "", {"type": "string"}, "Registry host; `global.image.registry` when empty."),
        ("image.repository", None, {"type": "string", "minLength": 1}, "Image repository."),
        ("image.tag", "", {"type": "string"}, "Image tag; `global.image.tag`, then the chart's appVersion, when empty."),
        ("image.pullPolicy", "", {"type": "string", "enum": ["", "Always", "IfNotPresent", "Never"]}, "Pull policy; `global.image.pullPolicy`, then IfNotPresent, when empty."),
        ("imagePullSecrets", [], PEERS, "Pull secrets (`[{name: ...}]`)."),
        ("brokerUrl", "", {"type": "string"}, "NATS URL without credentials; `global.broker.url`, then the release's evaluation broker, when empty. A URL with a user and password goes in `credentials.brokerUrl`."),
        ("logLevel", "info", {"type": "string", "enum": ["debug", "info", "warn", "error"]}, "Log level."),
        ("config", {}, FREE_OBJ, "More keys of the service's YAML configuration file (see the service's README), merged over what the chart sets; the service refuses unknown keys at start."),
        ("extraEnv", [], PEERS, "More container environment variables (`OUTPOST_*` override the file)."),
        ("credentials.brokerUrl.existingSecret", "", None, "Secret holding the broker URL with its credentials (`nats://user:pass@host:4222`); mounted as a file, read through `OUTPOST_BROKER_URL_FILE`."),
        ("credentials.brokerUrl.key", "url", None, "Key of that Secret."),
        ("extraSecretMounts", [], {"type": "array", "items": {"type": "object", "additionalProperties": False,
            "required": ["name", "existingSecret", "mountPath"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 40},
                           "existingSecret": {"type": "string", "minLength": 1},
                           "mountPath": {"type": "string", "pattern": "^/"}}}},
            "More Secrets mounted read-only as files (`{name, existingSecret, mountPath}`), e.g. NATS credentials or TLS certificates that `config` points at."),
        ("resources.requests.cpu", cpu, QTY, "CPU request."),
        ("resources.requests.memory", mem, QTY, "Memory request."),
        ("resources.limits.memory", lim_mem, QTY, "Memory limit."),
        ("tmpSize", "256Mi", QTY, "Size limit of the `/tmp` emptyDir (the root filesystem is read-only)."),
        ("terminationGracePeriodSeconds", 60, {"type": "integer", "minimum": 0}, "Time to drain on shutdown."),
        ("serviceAccount.create", True, {"type": "boolean"}, "Create the pod's ServiceAccount."),
        ("serviceAccount.name", "", {"type": "string"}, "Its name (default: the full name)."),
        ("serviceAccount.annotations", {}, FREE_OBJ, "Annotations (e.g. `eks.amazonaws.com/role-arn` for SQS or Secrets Manager)."),
        ("serviceAccount.automountToken", False, {"type": "boolean"}, "Mount the ServiceAccount token."),
        ("podAnnotations", {}, FREE_OBJ, "Pod annotations."),
        ("podLabels", {}, FREE_OBJ, "Pod labels."),
        ("nodeSelector", {}, FREE_OBJ, "Node selector."),
        ("tolerations", [], PEERS, "Tolerations."),
        ("affinity", {}, FREE_OBJ, "Affinity."),
        ("podDisruptionBudget.enabled", True, {"type": "boolean"}, "Create a PodDisruptionBudget."),
        ("podDisruptionBudget.maxUnavailable", 1, {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]+%$"}]}, "Pods that may be down at once in a voluntary disruption."),
        ("networkPolicy.enabled", True, {"type": "boolean"}, "Create a NetworkPolicy."),
        ("networkPolicy.ingressFrom", [], PEERS, ingress_desc),
        ("networkPolicy.kubeAPI.enabled", False, {"type": "boolean"}, "Allow egress to the Kubernetes API."),
        ("networkPolicy.kubeAPI.ports", [443, 6443], {"type": "array", "items": {"type": "integer"}}, "Its ports."),
        ("networkPolicy.kubeAPI.to", [], PEERS, "Its addresses (`ipBlock` peers); empty: any address on those ports."),
        ("networkPolicy.extraEgress", [], PEERS, "More egress rules (NetworkPolicyEgressRule): the declared destinations."),
        ("networkPolicy.otel.to", [], PEERS, "Addresses (peers) of the OTLP endpoint when tracing is on (egress to the endpoint's port is then allowed); empty: any address on that port."),
        ("serviceMonitor.enabled", False, {"type": "boolean"}, "Create a Prometheus Operator ServiceMonitor for `/metrics`."),
        ("serviceMonitor.interval", "30s", {"type": "string"}, "Scrape interval."),
        ("serviceMonitor.labels", {}, FREE_OBJ, "More labels (for the Prometheus selector)."),
        ("tests.image", "busybox:1.37", {"type": "string"}, "Image of the `helm test` connectivity pod (needs `wget` and `nc`)."),
    ] + OTEL
    if broker_egress:
        rows.insert(rows.index(next(r for r in rows if r[0] == "networkPolicy.kubeAPI.enabled")),
                    ("networkPolicy.broker.ports", [4222], {"type": "array", "items": {"type": "integer"}}, "Broker ports egress is allowed to."))
        rows.insert(rows.index(next(r for r in rows if r[0] == "networkPolicy.kubeAPI.enabled")),
                    ("networkPolicy.broker.to", [], PEERS, "Broker addresses (peers); empty: any address on those ports."))
    return rows

def replace(rows, key, default=None, schema=None, desc=None):
    out = []
    for r in rows:
        if r[0] == key:
            r = (key, r[1] if default is None else default, r[2] if schema is None else schema, r[3] if desc is None else desc)
        out.append(r)
    return out

def cred(name, key, desc):
    return [("credentials.%s.existingSecret" % name, "", None, desc), ("credentials.%s.key" % name, key, None, "Key of that Secret.")]

CP_INGRESS = "Peers allowed to reach the API port; empty: any source."
AG_INGRESS = "Peers allowed to reach the probe and metrics port (no other port is open); empty: any source."

charts = O()
s = common("", replicas=2, ingress_desc=CP_INGRESS)
s = replace(s, "image.repository", "outpost/scheduler")
s += [("service.port", 8080, {"type": "integer", "minimum": 1, "maximum": 65535}, "Port of the API, `/healthz`, `/readyz` and `/metrics`."),
      ("tenants", [], {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}, "Tenants served (besides `global.tenant`, the default tenant); more can be added at run time."),
      ("queueKind", "nats", {"type": "string", "enum": ["nats", "sqs"]}, "Queue backend (`sqs`: set `config.queue.sqs` and AWS credentials)."),
      ("brokerReplicas", 1, {"type": "integer", "enum": [1, 3]}, "Replicas of the streams and KV buckets (3 on a JetStream cluster).")]
s += cred("aws", "credentials", "Secret with an AWS shared credentials file (SQS); `AWS_SHARED_CREDENTIALS_FILE` points at it. Prefer IRSA through `serviceAccount.annotations`.")
s += cred("signingKey", "key", "Secret with the control plane's ed25519 signing key (PEM or 32-byte seed, e.g. the `.data/signing.key` a scheduler generates with `signing.generate`); read through `OUTPOST_SIGNING_KEY_FILE`. Its key id goes in `config.signing.key_id`.")
s += cred("brokerCredentials", "creds", "Secret with the NATS credentials file of this service (issued by the broker's operator, see docs/architecture.md); read through `OUTPOST_BROKER_CREDENTIALS`.")
s += cred("consoleSessionKey", "key", "Secret with the 32-byte key (raw or base64) that seals the web console's session cookies, shared by every replica; read through `OUTPOST_CONSOLE_SESSION_KEY_FILE`. When empty and the console is on, the chart makes `<fullname>-console-session` with a random key, kept across upgrades.")
s += cred("consoleOidcClientSecret", "secret", "Secret with the console's OIDC client secret (`config.console.oidc`); read through `OUTPOST_CONSOLE_OIDC_CLIENT_SECRET_FILE`.")
charts["scheduler"] = dict(rows=s, desc="The control plane's scheduler: jobs REST API, job records, dispatch to executor pools.", port=8080)

s = common("", replicas=2, ingress_desc=CP_INGRESS)
s = replace(s, "image.repository", "outpost/account-migrator")
s += [("service.port", 8081, {"type": "integer", "minimum": 1, "maximum": 65535}, "Port of the accounts API, `/healthz`, `/readyz` and `/metrics`."),
      ("tenants", [], {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}, "Tenants served (besides `global.tenant`).")]
s += cred("kubeconfigKey", "key", "Secret with the base64 AES-256 key that seals inline kubeconfigs (the same Secret as the k8s-watcher's); read through `OUTPOST_KUBECONFIG_KEY_FILE`.")
s += cred("signingKey", "key", "Secret with the control plane's ed25519 signing key (PEM or 32-byte seed, e.g. the `.data/signing.key` a scheduler generates with `signing.generate`); read through `OUTPOST_SIGNING_KEY_FILE`. Its key id goes in `config.signing.key_id`.")
s += cred("brokerCredentials", "creds", "Secret with the NATS credentials file of this service (issued by the broker's operator, see docs/architecture.md); read through `OUTPOST_BROKER_CREDENTIALS`.")
charts["account-migrator"] = dict(rows=s, desc="The control plane's Dynamic Accounts API and account lifecycle.", port=8081)

s = common("", replicas=2, ingress_desc=AG_INGRESS)
s = replace(s, "image.repository", "outpost/k8s-watcher")
s = replace(s, "serviceAccount.automountToken", True, None, "Mount the ServiceAccount token (the watcher's own cluster is read with it).")
s = replace(s, "networkPolicy.kubeAPI.enabled", True)
s += [("opsPort", 9092, {"type": "integer", "minimum": 1, "maximum": 65535}, "Port of `/healthz`, `/readyz` and `/metrics` (the only port open)."),
      ("zone", "default", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "Zone whose account leases the watchers take."),
      ("rbac.create", True, {"type": "boolean"}, "Create the Role or ClusterRole and its binding."),
      ("rbac.scope", "cluster", {"type": "string", "enum": ["cluster", "namespace"]}, "`cluster`: a ClusterRole; `namespace`: a Role in each of `rbac.namespaces` (\"Role if you deploy only to a single namespace\")."),
      ("rbac.namespaces", [], {"type": "array", "items": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}}, "Namespaces of the Roles (scope `namespace`); empty: the release's namespace."),
      ("rbac.verbs", ["get", "list", "watch", "create", "update", "patch", "delete"], {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]}}, "Verbs granted: read for the inventory, write for operations (apply, delete, scale)."),
      ("rbac.kinds", [], {"type": "array", "items": {"type": "string", "pattern": "^[a-z0-9/]+(\\.[a-z0-9.-]+)?$"}}, "Kinds granted, as accounts name them (`resource` or `resource.group`, e.g. `deployments.apps`); empty: every kind."),
      ("rbac.omitKinds", [], {"type": "array", "items": {"type": "string", "pattern": "^[a-z0-9/]+(\\.[a-z0-9.-]+)?$"}}, "Kinds taken out of `rbac.kinds` (RBAC cannot grant every kind but some: set `kinds` with it).")]
s += cred("kubeconfigKey", "key", "Secret with the base64 AES-256 key that seals inline kubeconfigs (the same Secret as the account-migrator's); read through `OUTPOST_KUBECONFIG_KEY_FILE`.")
s += cred("trustedKeys", "keys", "Secret with the control plane's public signing keys this agent trusts (`kid:base64` lines or PEM, several for rotation); read through `OUTPOST_SIGNING_TRUSTED_KEYS_FILE`. Without it the agent refuses to start unless `config.signing.allow_unsigned` is set.")
s += cred("brokerCredentials", "creds", "Secret with the NATS credentials file the control plane issued to this agent (`POST /api/v1/agents`); read through `OUTPOST_BROKER_CREDENTIALS`.")
charts["k8s-watcher"] = dict(rows=s, desc="The agent that watches Kubernetes clusters in the customer's network and runs operations on them.", port=9092)

s = common("", replicas=2, ingress_desc=AG_INGRESS)
s = replace(s, "image.repository", "outpost/ingestion-runner")
s += [("opsPort", 9091, {"type": "integer", "minimum": 1, "maximum": 65535}, "Port of `/healthz`, `/readyz` and `/metrics` (the only port open)."),
      ("pool", "default", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "Executor pool whose jobs the runners take (a customer's is typically `remote`)."),
      ("concurrency", 4, {"type": "integer", "minimum": 1, "maximum": 1024}, "Jobs run at once per pod."),
      ("queueKind", "nats", {"type": "string", "enum": ["nats", "sqs"]}, "Queue backend."),
      ("commandAllowlist", [], {"type": "array", "items": {"type": "string", "minLength": 1}}, "Executables the `command` task may run (the image has none but the runner: extend it)."),
      ("secretFiles", [], {"type": "array", "items": {"type": "object", "additionalProperties": False, "required": ["existingSecret"],
            "properties": {"existingSecret": {"type": "string", "minLength": 1}}}},
            "Secrets whose keys are `${NAME}`s for jobs, mounted together as files in one folder (`secrets.dir`); created with `kubectl create secret generic ... --from-literal=NAME=value`."),
      ("rbac.create", False, {"type": "boolean"}, "Create a Role (in the release's namespace) with `rbac.rules`, for the `kubernetes` secrets provider or tasks that use the API."),
      ("rbac.rules", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}], PEERS, "Rules of that Role.")]
s = replace(s, "serviceAccount.automountToken", False, None, "Mount the ServiceAccount token (needed with `rbac.create`).")
s += cred("aws", "credentials", "Secret with an AWS shared credentials file (SQS, Secrets Manager); `AWS_SHARED_CREDENTIALS_FILE` points at it. Prefer IRSA.")
s += cred("trustedKeys", "keys", "Secret with the control plane's public signing keys this agent trusts (`kid:base64` lines or PEM, several for rotation); read through `OUTPOST_SIGNING_TRUSTED_KEYS_FILE`. Without it the agent refuses to start unless `config.signing.allow_unsigned` is set.")
s += cred("brokerCredentials", "creds", "Secret with the NATS credentials file the control plane issued to this agent (`POST /api/v1/agents`); read through `OUTPOST_BROKER_CREDENTIALS`.")
charts["ingestion-runner"] = dict(rows=s, desc="The agent that runs jobs of an executor pool in the customer's network.", port=9091)

s = common("", replicas=1, cpu="100m", mem="256Mi", lim_mem="1Gi", ingress_desc="Peers allowed to reach the client port 4222; empty: any source.", broker_egress=False)
s = [r for r in s if r[0] not in ("brokerUrl", "credentials.brokerUrl.existingSecret", "credentials.brokerUrl.key", "config", "extraSecretMounts", "replicas", "podDisruptionBudget.maxUnavailable", "networkPolicy.kubeAPI.enabled", "networkPolicy.kubeAPI.ports", "networkPolicy.kubeAPI.to", "serviceMonitor.enabled", "serviceMonitor.interval", "serviceMonitor.labels", "serviceAccount.automountToken", "terminationGracePeriodSeconds", "networkPolicy.otel.to") and not r[0].startswith("otel.")]
s = replace(s, "image.repository", "outpost/outpost-broker")
s = replace(s, "enabled", True, None, "Install the evaluation broker (production uses an existing NATS cluster, or SQS).")
s += [("persistence.size", "8Gi", QTY, "Size of the JetStream data volume (PVC)."),
      ("persistence.storageClassName", "", {"type": "string"}, "Storage class; the cluster's default when empty."),
      ("maxPayload", 0, {"type": "integer", "minimum": 0}, "Largest message in bytes (0: the server's default, 1 MiB)."),
      ("service.type", "ClusterIP", {"type": "string", "enum": ["ClusterIP", "NodePort", "LoadBalancer"]}, "Service type (agents in other networks need a reachable address)."),
      ("service.port", 4222, {"type": "integer", "minimum": 1, "maximum": 65535}, "Client port."),
      ("podDisruptionBudget.maxUnavailable", 0, {"type": "integer", "minimum": 0, "maximum": 1}, "0 keeps the single node through voluntary disruptions."),
      ("credentials", {}, {"type": "object", "additionalProperties": False, "properties": {}}, "The evaluation broker takes no credentials (use NATS's own chart for authentication and TLS)."),
      ("terminationGracePeriodSeconds", 30, {"type": "integer", "minimum": 0}, "Time to flush JetStream on shutdown."),
      ]
charts["broker"] = dict(rows=s, desc="A single-node NATS JetStream for evaluation installs, its data on a PVC.", port=8222)

def set_path(d, path, v):
    parts = path.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, O())
    d[parts[-1]] = v

SIBLINGS = ["scheduler", "account-migrator", "broker", "ingestion-runner", "k8s-watcher"]

def schema_for(rows):
    root = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False, "properties": O()}
    root["properties"]["global"] = {"type": "object", "description": "Values shared with the umbrella chart (stack, tenant, broker, image)."}
    for sibling in SIBLINGS:
        root["properties"][sibling] = {"type": "object", "description": "The umbrella's section of another chart: present when `helm lint --with-subcharts` lints this chart with a profile of the umbrella; not read."}
    for path, default, sch, desc in rows:
        parts = path.split(".")
        node = root
        for p in parts[:-1]:
            props = node.setdefault("properties", O())
            if p not in props:
                props[p] = {"type": "object", "additionalProperties": False, "properties": O()}
            node = props[p]
        leaf = parts[-1]
        if sch is None:
            sch = {"type": "string"} if leaf != "key" else {"type": "string", "minLength": 1}
        entry = dict(sch)
        if desc:
            entry["description"] = desc
        node.setdefault("properties", O())[leaf] = entry
    return root

def yaml_scalar(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, (int, float)): return str(v)
    if isinstance(v, str):
        return json.dumps(v) if (v == "" or any(c in v for c in ":#{}[]") or v in ("true", "false")) else v
    return json.dumps(v)

def to_yaml(d, descs, prefix="", indent=0):
    out = []
    for k, v in d.items():
        path = prefix + k
        pad = "  " * indent
        if path in descs and descs[path]:
            out.append("%s# -- %s" % (pad, descs[path]))
        if isinstance(v, dict) and v:
            out.append("%s%s:" % (pad, k))
            out.extend(to_yaml(v, descs, path + ".", indent + 1))
        elif isinstance(v, dict):
            out.append("%s%s: {}" % (pad, k))
        elif isinstance(v, list):
            out.append("%s%s: %s" % (pad, k, json.dumps(v) if v else "[]"))
        else:
            out.append("%s%s: %s" % (pad, k, yaml_scalar(v)))
    return out

for name, c in charts.items():
    base = os.path.join(ROOT, "charts", name)
    os.makedirs(base, exist_ok=True)
    vals = O()
    descs = {}
    for path, default, sch, desc in c["rows"]:
        set_path(vals, path, default)
        descs[path] = desc
    with open(os.path.join(base, "values.yaml"), "w") as f:
        f.write("# Values of the %s chart. values.schema.json refuses unknown keys and wrong\n# types; README.md lists every value. Generated with the README table and the\n# schema by scripts/helm-values.py: edit its spec, not this file.\n" % name)
        f.write("\n".join(to_yaml(vals, descs)) + "\n")
    with open(os.path.join(base, "values.schema.json"), "w") as f:
        json.dump(schema_for(c["rows"]), f, indent=2)
        f.write("\n")
    table = ["| value | default | description |", "|---|---|---|"]
    for path, default, sch, desc in c["rows"]:
        table.append("| `%s` | `%s` | %s |" % (path, json.dumps(default), desc.replace("|", "\\|")))
    readme_path = os.path.join(base, "README.md")
    head = open(readme_path).read().split("## Values")[0] if os.path.exists(readme_path) else "# %s\n\n%s\n\n" % (name, c["desc"])
    with open(readme_path, "w") as f:
        f.write(head.rstrip("\n") + "\n\n## Values\n\n" + "\n".join(table) + "\n")
print("ok")
