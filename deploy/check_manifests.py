#!/usr/bin/env python3
"""Checks the deployment files against Kubernetes, KEDA and the app itself.

Run by .ci/deploy-checks (which installs the tools and renders the overlays); by hand:

    python deploy/check_manifests.py --render dev=/tmp/dev.yaml --render prod=/tmp/prod.yaml \
        --kubernetes-version 1.30.0 --bin target/debug/ghl-ekyte-sync

What it checks, and where the truth comes from:
- every rendered core resource against the Kubernetes OpenAPI schemas that kubernetes-validate
  ships, strictly (an unknown field is an error), for each Kubernetes version asked for; a kind
  with no schema is an error, never a skip;
- KEDA's ScaledObject and TriggerAuthentication against deploy/k8s/schemas/ (strict too);
- the house rules of issue 8: security contexts, probes, preStop, grace period above the drain
  time, CronJobs with concurrencyPolicy Forbid, no Secret in a rendered overlay, placeholders
  only in the Secret template, pinned images;
- that the manifests name what the app has: config keys (crates/app/config/default.toml),
  HTTP routes (the axum `.route(…)` calls in crates/app/src), metrics (the `ges_…` names in crates/), queue names
  (queue.prefix), and — with --bin — every command line (`<args> --help` must parse) and the
  effective configuration of each overlay (`config check` must accept it);
- deploy/compose.yaml and deploy/prometheus/alerts.yaml against the same facts;
- the Grafana dashboards (deploy/grafana/*.json): they parse, every panel has a query, and —
  with --scrape, the text of a live `/metrics` scrape of the binary — every metric a query
  names is one the service exports, with the labels the query filters and groups by;
- itself: --self-test breaks a copy of each render in several ways and fails unless every
  break is caught.

Exit status 0 when everything holds; 1 with every problem listed otherwise.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import yaml
from referencing import Registry, Resource

import kubernetes_validate

REPO = Path(__file__).resolve().parent.parent
KEDA_SCHEMA = REPO / "deploy/k8s/schemas/keda-v1alpha1.schema.json"
SECRET_TEMPLATE = REPO / "deploy/k8s/base/secret.template.yaml"
COMPOSE = REPO / "deploy/compose.yaml"
ALERTS = REPO / "deploy/prometheus/alerts.yaml"
DASHBOARDS = REPO / "deploy/grafana"
DEFAULTS = REPO / "crates/app/config/default.toml"
APP_SRC = REPO / "crates/app/src"

# The config file's path inside every container (GES_CONFIG).
CONFIG_PATH = "/etc/ghl-ekyte-sync/config.toml"
# Routes that may be published outside the cluster; the rest are for probes and Prometheus.
PUBLIC_ROUTES = {"/webhooks/ghl", "/oauth/callback"}
# Keys that hold secrets (or passwords inside URLs): only ever from the Secret.
SECRET_KEYS = {"database.url", "queue.url", "crypto.key", "ghl.client_secret"}
SECRET_KEY_PREFIXES = ("crypto.old_keys.",)
REQUIRED_SECRET_ENV = {"GES_DATABASE__URL", "GES_QUEUE__URL", "GES_CRYPTO__KEY", "GES_GHL__CLIENT_SECRET"}
POD_KINDS = {"Deployment", "Job", "CronJob"}


# ---------------------------------------------------------------------------------------------
# Problems


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    checks: int = 0

    def check(self, ok: bool, where: str, message: str) -> bool:
        self.checks += 1
        if not ok:
            self.problems.append(f"{where}: {message}")
        return ok

    def fail(self, where: str, message: str) -> None:
        self.check(False, where, message)


def name_of(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('name')}"


# ---------------------------------------------------------------------------------------------
# Facts about the app, read from its sources


@dataclass
class AppFacts:
    defaults: dict
    routes: set[str]
    metrics: set[str]


def app_facts() -> AppFacts:
    defaults = tomllib.loads(DEFAULTS.read_text())
    routes: set[str] = set()
    for path in APP_SRC.rglob("*.rs"):
        routes.update(re.findall(r'\.route\(\s*"([^"]+)"', path.read_text(errors="replace")))
    metrics: set[str] = set()
    for path in (REPO / "crates").rglob("*.rs"):
        metrics.update(re.findall(r'"(ges_[a-z0-9_]+)"', path.read_text(errors="replace")))
    return AppFacts(defaults, routes, metrics)


def duration_seconds(text: str) -> float:
    """humantime durations as the app writes them ("25s", "2m", "1h 30m", "500ms")."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    total, pos = 0.0, 0
    for m in re.finditer(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", text):
        if m.start() != pos:
            raise ValueError(f"not a duration: {text!r}")
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"not a duration: {text!r}")
    return total


def env_key_path(name: str) -> list[str] | None:
    """GES_QUEUE__PREFETCH → ["queue", "prefetch"] (the app's figment mapping), else None."""
    if not name.startswith("GES_") or name == "GES_CONFIG":
        return None
    return name[len("GES_"):].lower().split("__")


def check_key_path(report: Report, where: str, defaults: dict, path: list[str], value: Any) -> None:
    """`path` must name a key of the defaults, with a value of a compatible type."""
    node: Any = defaults
    for i, part in enumerate(path):
        if isinstance(node, dict) and part in node:
            node = node[part]
            continue
        # Maps whose keys are the user's (crypto.old_keys): any key, string values.
        if isinstance(node, dict) and not node and i == len(path) - 1:
            report.check(isinstance(value, str), where, f"{'.'.join(path)} must be a string")
            return
        report.fail(where, f"{'.'.join(path)} is not a setting of the app (crates/app/config/default.toml)")
        return
    report.checks += 1
    if value is None:
        return
    if isinstance(value, str) and not isinstance(node, str):
        return  # environment values are strings; `config check` (with --bin) parses them
    compatible = (
        type(value) is type(node)
        or (isinstance(node, float) and isinstance(value, int))
        or (isinstance(node, list) and isinstance(value, list))
    )
    report.check(compatible, where, f"{'.'.join(path)}: {type(value).__name__} where the app expects {type(node).__name__}")


def walk_toml(table: dict, prefix: list[str] | None = None) -> Iterator[tuple[list[str], Any]]:
    for key, value in table.items():
        path = (prefix or []) + [key]
        if isinstance(value, dict) and value:
            yield from walk_toml(value, path)
        else:
            yield path, value


def deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and out[key]:
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------------------------------------
# Schemas


class Schemas:
    """Strict Kubernetes schemas from kubernetes-validate, and the KEDA schema of this repo."""

    def __init__(self, versions: list[str]):
        root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
        self.dirs = {}
        for v in versions:
            d = root / f"v{v.lstrip('v')}-local-strict"
            if not d.is_dir():
                known = sorted(p.name for p in root.iterdir() if p.name.endswith("-local-strict"))
                raise SystemExit(f"kubernetes-validate has no schemas for Kubernetes {v}; it has {known}")
            self.dirs[v] = d
        self.registries: dict[str, Registry] = {}
        self.validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}

    def registry(self, version: str) -> Registry:
        if version not in self.registries:
            defs = json.loads((self.dirs[version] / "_definitions.json").read_text())
            self.registries[version] = Resource.from_contents(defs) @ Registry()
        return self.registries[version]

    def validator(self, version: str, filename: str, path: Path) -> jsonschema.protocols.Validator | None:
        key = (version, filename)
        if key not in self.validators:
            if not path.is_file():
                return None
            schema = json.loads(path.read_text())
            registry = Resource.from_contents(schema) @ self.registry(version)
            self.validators[key] = jsonschema.Draft202012Validator(schema, registry=registry)
        return self.validators[key]

    def keda_validator(self, version: str, kind: str) -> jsonschema.protocols.Validator | None:
        """The KEDA schema's definition of `kind` (so errors point at the field, not at a oneOf)."""
        key = (version, f"keda:{kind}")
        if key not in self.validators:
            keda = json.loads(KEDA_SCHEMA.read_text())
            if kind not in keda["$defs"]:
                return None
            registry = Resource.from_contents(keda) @ self.registry(version)
            self.validators[key] = jsonschema.Draft202012Validator({"$ref": f"{keda['$id']}#/$defs/{kind}"}, registry=registry)
        return self.validators[key]

    def validate(self, report: Report, where: str, doc: dict) -> None:
        api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        for version in self.dirs:
            if api.startswith("keda.sh/"):
                v = self.keda_validator(version, kind)
                label = f"KEDA schema ({KEDA_SCHEMA.relative_to(REPO)})"
            else:
                # kubernetes-validate's file naming: networking.k8s.io/v1 → networking-v1.
                group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api)
                filename = f"{kind.lower()}-{group}.json"
                v = self.validator(version, filename, self.dirs[version] / filename)
                label = f"Kubernetes {version}"
            if v is None:
                report.fail(where, f"no schema for {kind} {api} in Kubernetes {version}: not a resource this cluster version has")
                continue
            errors = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
            report.checks += 1
            for e in errors[:5]:
                path = ".".join(str(p) for p in e.absolute_path) or "(top)"
                report.problems.append(f"{where}: {label}: {path}: {e.message[:300]}")


# ---------------------------------------------------------------------------------------------
# One rendered overlay


def pod_spec(doc: dict) -> dict | None:
    spec = doc.get("spec") or {}
    if doc.get("kind") in ("Deployment", "Job"):
        return (spec.get("template") or {}).get("spec")
    if doc.get("kind") == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    return None


def pod_labels(doc: dict) -> dict:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}


def selects(selector: dict, labels: dict) -> bool:
    wanted = (selector or {}).get("matchLabels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


@dataclass
class Overlay:
    name: str
    docs: list[dict]
    config: dict  # defaults ⊕ config.toml ⊕ the env ConfigMap (secrets left at defaults)
    env: dict[str, str]  # the env ConfigMap's variables
    config_toml: str
    commands: set[tuple[str, ...]]


def check_overlay(report: Report, name: str, docs: list[dict], facts: AppFacts, schemas: Schemas,
                  secret_keys: set[str]) -> Overlay | None:
    where0 = f"overlay {name}"
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc:
            report.fail(where0, "a rendered document is not a Kubernetes object")
            continue
        by_kind.setdefault(doc["kind"], []).append(doc)
        schemas.validate(report, f"{where0}: {name_of(doc)}", doc)

    # Secrets never come out of the repository.
    report.check("Secret" not in by_kind, where0, "renders a Secret; secrets are created out of band (secret.template.yaml)")
    report.check(len(by_kind.get("Namespace", [])) == 1, where0, "must create exactly one Namespace")

    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    accounts = {d["metadata"]["name"] for d in by_kind.get("ServiceAccount", [])}
    for required in ("worker", "ingress"):
        report.check(required in deployments, where0, f"has no Deployment {required}")
    report.check(len(by_kind.get("Job", [])) >= 1 and any(
        ((pod_spec(j) or {}).get("containers") or [{}])[0].get("args") == ["migrate"] for j in by_kind.get("Job", [])
    ), where0, "has no Job running `migrate`")

    # The configuration every pod gets: one config ConfigMap (config.toml) and one env ConfigMap.
    config_cm = [c for c in configmaps.values() if "config.toml" in (c.get("data") or {})]
    if not report.check(len(config_cm) == 1, where0, "needs exactly one ConfigMap holding config.toml"):
        return None
    config_toml = config_cm[0]["data"]["config.toml"]
    try:
        file_layer = tomllib.loads(config_toml)
    except tomllib.TOMLDecodeError as e:
        report.fail(f"{where0}: config.toml", f"not TOML: {e}")
        return None
    for path, value in walk_toml(file_layer):
        check_key_path(report, f"{where0}: config.toml", facts.defaults, path, value)
        joined = ".".join(path)
        report.check(joined not in SECRET_KEYS and not joined.startswith(SECRET_KEY_PREFIXES),
                     f"{where0}: config.toml", f"{joined} is a secret: it belongs in the Secret")
    env_cms = [c for c in configmaps.values() if c is not config_cm[0]]
    env: dict[str, str] = {}
    for cm in env_cms:
        for key, value in (cm.get("data") or {}).items():
            path = env_key_path(key)
            if path is None:
                report.fail(f"{where0}: {name_of(cm)}", f"{key} is not a GES_<SECTION>__<KEY> variable")
                continue
            check_key_path(report, f"{where0}: {name_of(cm)}", facts.defaults, path, value)
            joined = ".".join(path)
            report.check(joined not in SECRET_KEYS and not joined.startswith(SECRET_KEY_PREFIXES),
                         f"{where0}: {name_of(cm)}", f"{key} is a secret: it belongs in the Secret")
            env[key] = value
    config = deep_merge(facts.defaults, file_layer)
    for key, value in env.items():
        node = config
        path = env_key_path(key) or []
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    bind_port = int(str(config["http"]["bind"]).rsplit(":", 1)[1])
    drain = duration_seconds(str(config["worker"]["drain_timeout"]))
    prefix = str(config["queue"]["prefix"])
    commands: set[tuple[str, ...]] = set()
    secret_names: set[str] = set()

    for doc in docs:
        if doc.get("kind") not in POD_KINDS:
            continue
        where = f"{where0}: {name_of(doc)}"
        spec = pod_spec(doc) or {}
        sc = spec.get("securityContext") or {}
        report.check(sc.get("runAsNonRoot") is True, where, "pod securityContext.runAsNonRoot must be true")
        report.check((sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", where,
                     "pod securityContext.seccompProfile.type must be RuntimeDefault")
        report.check(spec.get("automountServiceAccountToken") is False, where,
                     "automountServiceAccountToken must be false (the app never calls the Kubernetes API)")
        report.check(spec.get("enableServiceLinks") is False, where,
                     "enableServiceLinks must be false (injected <SERVICE>_… variables can collide with GES_…)")
        report.check(spec.get("serviceAccountName") in accounts, where,
                     f"serviceAccountName {spec.get('serviceAccountName')!r} is not rendered")
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        containers = spec.get("containers") or []
        report.check(len(containers) == 1, where, "one container per pod expected")
        for c in containers:
            cw = f"{where}: container {c.get('name')}"
            csc = c.get("securityContext") or {}
            report.check(csc.get("allowPrivilegeEscalation") is False, cw, "allowPrivilegeEscalation must be false")
            report.check(csc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem must be true")
            report.check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []), cw, "capabilities must drop ALL")
            image = str(c.get("image", ""))
            tag = image.rsplit("/", 1)[-1]
            report.check("@sha256:" in image or (":" in tag and not tag.endswith(":latest")), cw,
                         f"image {image!r} must be pinned to a tag (not latest) or a digest")
            res = c.get("resources") or {}
            report.check(bool((res.get("requests") or {}).get("cpu")) and bool((res.get("requests") or {}).get("memory")),
                         cw, "resources.requests cpu and memory are required")
            report.check(bool((res.get("limits") or {}).get("memory")), cw, "resources.limits.memory is required")
            report.check(not c.get("command"), cw, "use args, not command: the image's entrypoint is the binary")
            args = c.get("args") or []
            report.check(bool(args) and all(isinstance(a, str) for a in args), cw, "args must name a command")
            commands.add(tuple(args))
            envs = {e.get("name"): e for e in c.get("env") or []}
            report.check((envs.get("GES_CONFIG") or {}).get("value") == CONFIG_PATH, cw, f"GES_CONFIG must be {CONFIG_PATH}")
            for e in c.get("env") or []:
                path = env_key_path(e.get("name", ""))
                if path is not None:
                    report.check("value" not in e or ".".join(path) not in SECRET_KEYS, cw,
                                 f"{e['name']} is a secret: take it from the Secret")
                    check_key_path(report, cw, facts.defaults, path, e.get("value"))
            refs = c.get("envFrom") or []
            cm_refs = [r["configMapRef"]["name"] for r in refs if "configMapRef" in r]
            sec_refs = [r["secretRef"]["name"] for r in refs if "secretRef" in r]
            report.check(all(n in configmaps for n in cm_refs) and len(cm_refs) == len(env_cms), cw,
                         f"envFrom must take the env ConfigMap, rendered: {cm_refs}")
            report.check(len(sec_refs) == 1, cw, "envFrom must take the Secret (exactly one)")
            secret_names.update(sec_refs)
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
            mount = mounts.get(str(Path(CONFIG_PATH).parent))
            ok = mount is not None and mount.get("readOnly") is True and \
                (volumes.get(mount["name"], {}).get("configMap") or {}).get("name") == config_cm[0]["metadata"]["name"]
            report.check(ok, cw, f"must mount the config.toml ConfigMap read-only at {Path(CONFIG_PATH).parent}")

        if doc["kind"] == "CronJob":
            report.check(doc["spec"].get("concurrencyPolicy") == "Forbid", where, "concurrencyPolicy must be Forbid")
        if doc["kind"] == "Deployment":
            check_deployment(report, where, doc, spec, containers, bind_port, drain)

    report.check(len(secret_names) == 1, where0, f"every pod must take the same Secret, found {sorted(secret_names)}")
    secret_name = next(iter(secret_names), "")
    check_routing(report, where0, by_kind, deployments, facts, env, config)
    check_keda(report, where0, by_kind, deployments, prefix, secret_name, secret_keys)
    for pdb in by_kind.get("PodDisruptionBudget", []):
        report.check(any(selects(pdb["spec"].get("selector"), pod_labels(d)) for d in deployments.values()),
                     f"{where0}: {name_of(pdb)}", "selects no Deployment's pods")
    for dep in deployments.values():
        report.check(any(selects(p["spec"].get("selector"), pod_labels(dep)) for p in by_kind.get("PodDisruptionBudget", [])),
                     f"{where0}: {name_of(dep)}", "no PodDisruptionBudget covers it")
    for np in by_kind.get("NetworkPolicy", []):
        report.check(any(selects(np["spec"].get("podSelector"), pod_labels(d)) for d in docs if d.get("kind") in POD_KINDS),
                     f"{where0}: {name_of(np)}", "selects no pod of the service")
    return Overlay(name, docs, config, env, config_toml, commands)


def check_deployment(report: Report, where: str, doc: dict, spec: dict, containers: list[dict],
                     bind_port: int, drain: float) -> None:
    c = containers[0] if containers else {}
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    report.check(ports.get("http") == bind_port, where, f"container port `http` must be http.bind's port {bind_port}")

    def probe_ok(kind: str, paths: set[str]) -> None:
        probe = c.get(kind)
        if not report.check(isinstance(probe, dict) and "httpGet" in probe, where, f"{kind} (httpGet) is required"):
            return
        get = probe["httpGet"]
        report.check(get.get("path") in paths, where, f"{kind} path {get.get('path')!r} must be one of {sorted(paths)}")
        report.check(get.get("port") in ("http", bind_port), where, f"{kind} port must be `http` ({bind_port})")

    probe_ok("livenessProbe", {"/healthz"})
    probe_ok("readinessProbe", {"/healthz", "/readyz"})
    pre = ((c.get("lifecycle") or {}).get("preStop")) or {}
    report.check(bool(pre), where, "a preStop hook is required")
    pause = float((pre.get("sleep") or {}).get("seconds", 0))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    report.check(grace > pause + drain, where,
                 f"terminationGracePeriodSeconds {grace} must exceed preStop {pause:g}s + worker.drain_timeout {drain:g}s")
    annotations = ((doc["spec"]["template"].get("metadata") or {}).get("annotations")) or {}
    report.check(annotations.get("prometheus.io/port") == str(bind_port) and annotations.get("prometheus.io/path") == "/metrics",
                 where, f"prometheus.io/port must be {bind_port} and prometheus.io/path /metrics")
    strategy = (doc["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    report.check(strategy.get("maxUnavailable") in (0, "0", "0%"), where,
                 "rollingUpdate.maxUnavailable must be 0 (old pods stay until new ones start)")


def check_routing(report: Report, where0: str, by_kind: dict, deployments: dict, facts: AppFacts,
                  env: dict, config: dict) -> None:
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for svc in services.values():
        where = f"{where0}: {name_of(svc)}"
        targets = [d for d in deployments.values() if all(pod_labels(d).get(k) == v for k, v in (svc["spec"].get("selector") or {}).items())]
        if not report.check(len(targets) == 1, where, "must select the pods of exactly one Deployment"):
            continue
        names = {p.get("name") for p in (pod_spec(targets[0]) or {}).get("containers", [{}])[0].get("ports") or []}
        for p in svc["spec"].get("ports") or []:
            report.check(p.get("targetPort") in names, where, f"targetPort {p.get('targetPort')!r} is not a container port")
        report.check(targets[0]["metadata"]["name"] == "ingress", where, "only the ingress pods sit behind a Service")
    redirect = str(config["ghl"]["redirect_uri"])
    hosts: set[str] = set()
    for ing in by_kind.get("Ingress", []):
        where = f"{where0}: {name_of(ing)}"
        tls_hosts = {h for t in ing["spec"].get("tls") or [] for h in t.get("hosts") or []}
        for rule in ing["spec"].get("rules") or []:
            host = rule.get("host", "")
            hosts.add(host)
            report.check(host in tls_hosts, where, f"host {host} has no TLS entry (GHL needs https)")
            for p in (rule.get("http") or {}).get("paths") or []:
                report.check(p.get("path") in facts.routes, where, f"path {p.get('path')} is not a route of the app {sorted(facts.routes)}")
                report.check(p.get("path") in PUBLIC_ROUTES, where, f"path {p.get('path')} must not be public (only {sorted(PUBLIC_ROUTES)})")
                backend = (p.get("backend") or {}).get("service") or {}
                svc = services.get(backend.get("name"))
                if report.check(svc is not None, where, f"backend Service {backend.get('name')} is not rendered"):
                    port = backend.get("port") or {}
                    report.check(any(port.get("name") == sp.get("name") or port.get("number") == sp.get("port")
                                     for sp in svc["spec"].get("ports") or []), where, f"backend port {port} is not a port of the Service")
    report.check(any(redirect == f"https://{h}/oauth/callback" for h in hosts), where0,
                 f"ghl.redirect_uri {redirect} must be https://<Ingress host>/oauth/callback (hosts: {sorted(hosts)})")


def check_keda(report: Report, where0: str, by_kind: dict, deployments: dict, prefix: str, secret_name: str,
               secret_keys: set[str]) -> None:
    auths = {a["metadata"]["name"]: a for a in by_kind.get("TriggerAuthentication", [])}
    scaled = by_kind.get("ScaledObject", [])
    report.check(len(scaled) == 1, where0, "needs one KEDA ScaledObject (the workers')")
    for so in scaled:
        where = f"{where0}: {name_of(so)}"
        spec = so.get("spec") or {}
        target = deployments.get((spec.get("scaleTargetRef") or {}).get("name"))
        if report.check(target is not None and target["metadata"]["name"] == "worker", where, "must scale the worker Deployment"):
            report.check("replicas" not in target["spec"], where,
                         "the worker Deployment must not set replicas (it would fight the autoscaler on every apply)")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        report.check(1 <= lo <= hi, where, f"need 1 <= minReplicaCount ({lo}) <= maxReplicaCount ({hi}): a webhook must not wait for a scale-up from zero")
        queues = set()
        for t in spec.get("triggers") or []:
            meta = t.get("metadata") or {}
            if not report.check(t.get("type") == "rabbitmq", where, f"trigger type {t.get('type')!r}: the workers scale on RabbitMQ"):
                continue
            queues.add(meta.get("queueName"))
            report.check("host" not in meta and "password" not in json.dumps(meta).lower(), where,
                         "broker credentials must come from a TriggerAuthentication, not trigger metadata")
            report.check(meta.get("mode") == "QueueLength", where, "mode must be QueueLength")
            auth = auths.get((t.get("authenticationRef") or {}).get("name"))
            if report.check(auth is not None, where, f"authenticationRef {t.get('authenticationRef')} is not rendered"):
                refs = {r.get("parameter"): r for r in (auth.get("spec") or {}).get("secretTargetRef") or []}
                host = refs.get("host") or {}
                report.check(host.get("name") == secret_name and host.get("key") in secret_keys, f"{where0}: {name_of(auth)}",
                             f"the `host` parameter must come from Secret {secret_name}, key GES_QUEUE__URL")
        want = {f"{prefix}.realtime", f"{prefix}.bulk"}
        report.check(queues == want, where, f"triggers must watch {sorted(want)} (queue.prefix {prefix!r}), found {sorted(q or '' for q in queues)}")


# ---------------------------------------------------------------------------------------------
# Files outside the overlays


def check_secret_template(report: Report, facts: AppFacts, schemas: Schemas) -> set[str]:
    where = str(SECRET_TEMPLATE.relative_to(REPO))
    docs = [d for d in yaml.safe_load_all(SECRET_TEMPLATE.read_text()) if d]
    if not report.check(len(docs) == 1 and docs[0].get("kind") == "Secret", where, "must hold one Secret"):
        return set()
    secret = docs[0]
    schemas.validate(report, where, secret)
    report.check("data" not in secret, where, "use stringData with placeholders; no data")
    values = secret.get("stringData") or {}
    for key, value in values.items():
        report.check(bool(re.fullmatch(r"<[^<>]+>", str(value))), where, f"{key} must be a <placeholder>, not a value")
        path = env_key_path(key)
        if report.check(path is not None, where, f"{key} is not a GES_<SECTION>__<KEY> variable"):
            check_key_path(report, where, facts.defaults, path, str(value))
    missing = REQUIRED_SECRET_ENV - set(values)
    report.check(not missing, where, f"missing keys {sorted(missing)}")
    return set(values)


def compose_commands(report: Report, facts: AppFacts) -> set[tuple[str, ...]]:
    where = str(COMPOSE.relative_to(REPO))
    doc = yaml.safe_load(COMPOSE.read_text())
    services = (doc or {}).get("services") or {}
    commands: set[tuple[str, ...]] = set()
    ours = {n: s for n, s in services.items() if "ghl-ekyte-sync" in str(s.get("image", "")) or "build" in s}
    report.check({"rabbitmq", "postgres"} <= set(services), where, "needs services rabbitmq and postgres")
    report.check("management" in str((services.get("rabbitmq") or {}).get("image", "")), where,
                 "RabbitMQ must be the management image (UI)")
    report.check(bool(ours), where, "no service runs the app")
    for name, svc in ours.items():
        sw = f"{where}: service {name}"
        cmd = svc.get("command")
        if report.check(isinstance(cmd, list) and cmd and all(isinstance(a, str) for a in cmd), sw, "command must be a list of args"):
            commands.add(tuple(cmd))
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
        report.check(env.get("GES_CONFIG") == CONFIG_PATH, sw, f"GES_CONFIG must be {CONFIG_PATH} (as in Kubernetes)")
        for key, value in env.items():
            path = env_key_path(key)
            if path is not None:
                check_key_path(report, sw, facts.defaults, path, value if value is None else str(value))
        mounts = [str(v) for v in svc.get("volumes") or []]
        report.check(any(m.startswith("./k8s/base/config.toml:" + CONFIG_PATH) for m in mounts), sw,
                     "must mount ./k8s/base/config.toml (the ConfigMap's file) at " + CONFIG_PATH)
        report.check(svc.get("read_only") is True and "ALL" in (svc.get("cap_drop") or []), sw,
                     "read_only and cap_drop ALL, as in Kubernetes")
    return commands


def check_alerts(report: Report, facts: AppFacts) -> None:
    where = str(ALERTS.relative_to(REPO))
    doc = yaml.safe_load(ALERTS.read_text()) or {}
    rules = [r for g in doc.get("groups") or [] for r in g.get("rules") or []]
    report.check(len(rules) >= 5, where, "expected the example alert rules")
    used: set[str] = set()
    for r in rules:
        rw = f"{where}: {r.get('alert') or r.get('record')}"
        expr = str(r.get("expr", ""))
        report.check(bool(r.get("alert")) and bool(expr.strip()), rw, "alert and expr are required")
        report.check((r.get("labels") or {}).get("severity") in ("critical", "warning", "info"), rw, "labels.severity must be critical, warning or info")
        report.check(bool((r.get("annotations") or {}).get("summary")), rw, "annotations.summary is required")
        report.check(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}") and expr.count("[") == expr.count("]"),
                     rw, "unbalanced brackets in expr")
        for metric in set(re.findall(r"\b(ges_[a-z0-9_]+)", expr)):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            report.check(metric in facts.metrics or base in facts.metrics, rw, f"{metric} is not a metric the app records")
            used.add(base if base in facts.metrics else metric)
    for metric in ("ges_dead_letters_total", "ges_webhooks_total", "ges_sync_lag_seconds", "ges_queue_depth", "ges_ghl_daily_remaining"):
        report.check(metric in used, where, f"no alert uses {metric}")


# ---------------------------------------------------------------------------------------------
# Grafana dashboards, against a live scrape


@dataclass
class Scrape:
    """The series of a Prometheus text-format scrape: metric name -> the label names seen."""
    labels: dict[str, set[str]]


def parse_scrape(text: str) -> Scrape:
    labels: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 3:
                labels.setdefault(parts[2], set())
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
        if m:
            keys = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
            labels.setdefault(m.group(1), set()).update(keys)
    return Scrape(labels)


def dashboard_queries(doc: Any) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable, nested rows included."""
    def panels(items: list) -> Iterator[dict]:
        for panel in items or []:
            yield panel
            yield from panels(panel.get("panels") or [])
    for panel in panels(doc.get("panels") or []):
        for t in panel.get("targets") or []:
            yield f"panel {panel.get('title')!r}", str(t.get("expr", ""))
    for var in (doc.get("templating") or {}).get("list") or []:
        if var.get("type") == "query":
            q = var.get("query")
            q = q.get("query", "") if isinstance(q, dict) else str(q or "")
            yield f"variable {var.get('name')}", q


def check_dashboard(report: Report, where: str, doc: Any, facts: AppFacts, scrape: Scrape | None) -> None:
    if not report.check(isinstance(doc, dict) and bool(doc.get("title")) and bool(doc.get("uid")),
                        where, "a dashboard needs a title and a uid"):
        return
    graphs = [p for p in doc.get("panels") or [] if p.get("type") != "row"]
    report.check(len(graphs) >= 6, where, "expected the dashboard's panels")
    for p in graphs:
        report.check(bool(p.get("targets")) and all(str(t.get("expr", "")).strip() for t in p["targets"]),
                     f"{where}: panel {p.get('title')!r}", "a panel without a query")
    for qwhere, expr in dashboard_queries(doc):
        qw = f"{where}: {qwhere}"
        report.check(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"),
                     qw, f"unbalanced brackets in {expr!r}")
        names = set(re.findall(r"\b(ges_[a-z0-9_]+)", expr))
        report.check(bool(names), qw, f"the query names no ges_ metric: {expr!r}")
        for metric in names:
            report.check(metric in facts.metrics, qw, f"{metric} is not a metric the app records")
            if scrape is None:
                continue
            if not report.check(metric in scrape.labels, qw, f"{metric} is not in the live /metrics scrape"):
                continue
            have = scrape.labels[metric]
            for selector in re.findall(rf"\b{metric}\{{([^}}]*)\}}", expr):
                for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector):
                    report.check(label in have, qw, f"{metric} has no label {label!r} in the scrape (it has {sorted(have)})")
        if scrape is not None and names <= scrape.labels.keys():
            have = set().union(*(scrape.labels[m] for m in names)) | {"le", "quantile"}
            for group in re.findall(rf"\b(?:by|without)\s*\(([^)]*)\)", expr):
                for label in [x.strip() for x in group.split(",") if x.strip()]:
                    report.check(label in have, qw, f"grouped by {label!r}, a label none of {sorted(names)} has")
            for label in re.findall(r"label_values\(\s*ges_[a-z0-9_]+\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)", expr):
                report.check(label in have, qw, f"label_values of {label!r}, a label the metric does not have")


def check_dashboards(report: Report, facts: AppFacts, scrape: Scrape | None, self_test: bool) -> int:
    files = sorted(DASHBOARDS.glob("*.json"))
    report.check(bool(files), str(DASHBOARDS.relative_to(REPO)), "no dashboard")
    for path in files:
        where = str(path.relative_to(REPO))
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            report.fail(where, f"does not parse: {e}")
            continue
        check_dashboard(report, where, doc, facts, scrape)
        if self_test and scrape is not None:
            for label, old, new, expect in (
                ("dashboard_unknown_metric", "ges_messages_total", "ges_messages_totl", "not a metric the app records"),
                ("dashboard_metric_not_exported", "ges_api_calls_total", "ges_api_call_seconds_total", "not in the live /metrics scrape"),
                ("dashboard_unknown_label", "status=", "http_status=", "has no label 'http_status'"),
                ("dashboard_unknown_grouping", "by (tenant, provider)", "by (tenant, vendor)", "grouped by 'vendor'"),
            ):
                inner = Report()
                check_dashboard(inner, where, json.loads(path.read_text().replace(old, new)), facts, scrape)
                report.check(any(expect in p for p in inner.problems), f"self-test {label} on {where}",
                             f"the break was NOT detected ({expect!r}); problems seen: {inner.problems[:3]}")
    return len(files)


# ---------------------------------------------------------------------------------------------
# The binary


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GES_") and k not in ("DATABASE_URL", "RUST_LOG")}
    env["NO_COLOR"] = "1"
    return env


def check_commands(report: Report, binary: Path, commands: set[tuple[str, ...]]) -> None:
    for args in sorted(commands):
        proc = subprocess.run([str(binary), *args, "--help"], capture_output=True, text=True, env=clean_env(), timeout=30)
        report.check(proc.returncode == 0, f"command `ghl-ekyte-sync {' '.join(args)}`",
                     f"the binary does not accept it: {' '.join((proc.stderr or proc.stdout).split())[:300]}")


def check_effective_config(report: Report, binary: Path, overlay: Overlay, secret_keys: set[str]) -> None:
    where = f"overlay {overlay.name}: config check"
    dummies = {
        "GES_DATABASE__URL": "postgres://ges:placeholder@127.0.0.1:5432/ges",
        "GES_QUEUE__URL": "amqp://ges:placeholder@127.0.0.1:5672/%2f",
        "GES_CRYPTO__KEY": base64.b64encode(os.urandom(32)).decode(),
        "GES_GHL__CLIENT_SECRET": "placeholder",
    }
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.toml"
        cfg.write_text(overlay.config_toml)
        env = clean_env() | overlay.env | {k: v for k, v in dummies.items() if k in secret_keys} | {"GES_CONFIG": str(cfg)}
        proc = subprocess.run([str(binary), "config", "check", "--json"], capture_output=True, text=True, env=env, timeout=30)
    if not report.check(proc.returncode == 0, where, f"the app rejects the configuration: {' '.join(proc.stderr.split())[:400]}"):
        return
    effective = json.loads(proc.stdout)
    # The values the manifests were built around, as the app sees them.
    for path, mine in (
        (("http", "bind"), overlay.config["http"]["bind"]),
        (("queue", "prefix"), overlay.config["queue"]["prefix"]),
        (("queue", "backend"), overlay.config["queue"]["backend"]),
        (("scheduler", "enabled"), overlay.config["scheduler"]["enabled"]),
        (("ghl", "redirect_uri"), overlay.config["ghl"]["redirect_uri"]),
    ):
        theirs = effective
        for part in path:
            theirs = theirs.get(part, {}) if isinstance(theirs, dict) else None
        report.check(theirs == mine, where, f"{'.'.join(path)}: the app reads {theirs!r}, the checks assumed {mine!r}")
    drain = duration_seconds(str(effective["worker"]["drain_timeout"]))
    report.check(drain == duration_seconds(str(overlay.config["worker"]["drain_timeout"])), where,
                 "worker.drain_timeout differs from the app's reading")
    report.check(effective["scheduler"]["enabled"] is False, where,
                 "scheduler.enabled must be false in Kubernetes: the CronJobs schedule")


# ---------------------------------------------------------------------------------------------
# Self-test: a checker that passes everything proves nothing.


def mutations() -> list[tuple[str, Any, list[str]]]:
    def deployment(docs: list[dict], name: str) -> dict:
        return next(d for d in docs if d.get("kind") == "Deployment" and d["metadata"]["name"] == name)

    def first(docs: list[dict], kind: str) -> dict:
        return next(d for d in docs if d.get("kind") == kind)

    def typo_core(docs):
        c = deployment(docs, "worker")["spec"]["template"]["spec"]["containers"][0]
        c["imagePullPolcy"] = "Always"

    def wrong_type(docs):
        deployment(docs, "ingress")["spec"]["replicas"] = "two"

    def typo_keda(docs):
        first(docs, "ScaledObject")["spec"]["maxReplicas"] = 5

    def keda_bad_mode(docs):
        first(docs, "ScaledObject")["spec"]["triggers"][0]["metadata"]["mode"] = "Length"

    def keda_wrong_queue(docs):
        first(docs, "ScaledObject")["spec"]["triggers"][0]["metadata"]["queueName"] = "ges.realtim"

    def cron_allows_overlap(docs):
        first(docs, "CronJob")["spec"]["concurrencyPolicy"] = "Allow"

    def short_grace(docs):
        deployment(docs, "worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 20

    def root_fs_writable(docs):
        c = first(docs, "Job")["spec"]["template"]["spec"]["containers"][0]
        c["securityContext"]["readOnlyRootFilesystem"] = False

    def probe_wrong_path(docs):
        c = deployment(docs, "worker")["spec"]["template"]["spec"]["containers"][0]
        c["readinessProbe"]["httpGet"]["path"] = "/ready"

    def unknown_config_key(docs):
        cm = next(d for d in docs if d.get("kind") == "ConfigMap" and "config.toml" in (d.get("data") or {}))
        cm["data"]["config.toml"] += "\n[worker2]\nthreads = 4\n"

    def secret_in_config(docs):
        cm = next(d for d in docs if d.get("kind") == "ConfigMap" and "config.toml" not in (d.get("data") or {}))
        cm["data"]["GES_CRYPTO__KEY"] = "AAAA"

    def rendered_secret(docs):
        docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "stringData": {"a": "b"}})

    def unknown_kind(docs):
        docs.append({"apiVersion": "apps/v1", "kind": "DeploymentX", "metadata": {"name": "x"}})

    # Each break, and words the problem it causes must contain (so a break caught for an
    # unrelated reason does not count).
    return [
        ("typo_core", typo_core, ["Kubernetes", "imagePullPolcy"]),
        ("wrong_type", wrong_type, ["Kubernetes", "spec.replicas"]),
        ("typo_keda", typo_keda, ["KEDA schema", "maxReplicas"]),
        ("keda_bad_mode", keda_bad_mode, ["KEDA schema", "'Length'"]),
        ("keda_wrong_queue", keda_wrong_queue, ["ges.realtim'"]),
        ("cron_allows_overlap", cron_allows_overlap, ["concurrencyPolicy must be Forbid"]),
        ("short_grace", short_grace, ["terminationGracePeriodSeconds 20"]),
        ("root_fs_writable", root_fs_writable, ["readOnlyRootFilesystem"]),
        ("probe_wrong_path", probe_wrong_path, ["readinessProbe path '/ready'"]),
        ("unknown_config_key", unknown_config_key, ["worker2.threads"]),
        ("secret_in_config", secret_in_config, ["GES_CRYPTO__KEY is a secret"]),
        ("rendered_secret", rendered_secret, ["renders a Secret"]),
        ("unknown_kind", unknown_kind, ["no schema for DeploymentX"]),
    ]


def self_test(report: Report, name: str, docs: list[dict], facts: AppFacts, schemas: Schemas,
              secret_keys: set[str], binary: Path | None) -> None:
    for label, mutate, expect in mutations():
        broken = copy.deepcopy(docs)
        mutate(broken)
        inner = Report()
        check_overlay(inner, name, broken, facts, schemas, secret_keys)
        caught = any(all(word in p for word in expect) for p in inner.problems)
        report.check(caught, f"self-test {label} on overlay {name}",
                     f"the break was NOT detected as expected ({expect}); problems seen: {inner.problems[:3]}")
    if binary is not None:
        inner = Report()
        check_commands(inner, binary, {("run", "--no-schedular")})
        report.check(any("--no-schedular" in p for p in inner.problems), "self-test unknown_flag",
                     "an unknown flag was NOT detected")


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--render", action="append", default=[], metavar="NAME=FILE",
                    help="a rendered overlay (kubectl kustomize output); repeat for each")
    ap.add_argument("--kubernetes-version", action="append", default=[], metavar="X.Y.Z")
    ap.add_argument("--bin", type=Path, help="the ghl-ekyte-sync binary, to check commands and configuration")
    ap.add_argument("--self-test", action="store_true", help="also prove that broken manifests fail")
    ap.add_argument("--scrape", type=Path, metavar="FILE",
                    help="a live /metrics scrape of the binary, to check the dashboards' queries against")
    args = ap.parse_args()
    if not args.render:
        ap.error("give at least one --render NAME=FILE")
    versions = args.kubernetes_version or ["1.30.0"]

    report = Report()
    facts = app_facts()
    schemas = Schemas(versions)
    secret_keys = check_secret_template(report, facts, schemas)
    commands = compose_commands(report, facts)
    check_alerts(report, facts)
    scrape = None
    if args.scrape is not None:
        if not args.scrape.is_file():
            report.fail("--scrape", f"{args.scrape} does not exist")
        else:
            scrape = parse_scrape(args.scrape.read_text())
            report.check(len(scrape.labels) > 0, "--scrape", f"{args.scrape} holds no metric")
    dashboards = check_dashboards(report, facts, scrape, args.self_test)
    overlays = []
    for item in args.render:
        name, _, path = item.partition("=")
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
        overlay = check_overlay(report, name, docs, facts, schemas, secret_keys)
        if overlay is not None:
            overlays.append(overlay)
            commands |= overlay.commands
        if args.self_test:
            self_test(report, name, docs, facts, schemas, secret_keys, args.bin)
    if args.bin is not None:
        if not args.bin.is_file():
            report.fail("--bin", f"{args.bin} does not exist")
        else:
            check_commands(report, args.bin, commands)
            for overlay in overlays:
                check_effective_config(report, args.bin, overlay, secret_keys)

    for p in report.problems:
        print(f"FAIL {p}")
    what = (f"{len(args.render)} overlay(s) against Kubernetes {', '.join(versions)}; {dashboards} dashboard(s) "
            + ("against a live scrape" if scrape is not None else "WITHOUT a live scrape (no --scrape)"))
    if report.problems:
        print(f"deploy checks: {len(report.problems)} problem(s) in {report.checks} checks ({what})")
        return 1
    print(f"deploy checks: all {report.checks} checks hold ({what}; commands: "
          f"{', '.join(' '.join(c) for c in sorted(commands))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
