"""Render and check every Kubernetes overlay in deploy/k8s/overlays/.

Run by scripts/check-deploy (which installs what this needs); usage:
    check_deploy.py KUBECTL KUBERNETES_VALIDATE SLUICE OUT_DIR

For each overlay: `kubectl kustomize`, validation against the Kubernetes
schemas (kubernetes-validate, strict, at the oldest version the manifests
support and at the newest the package knows), the checks below that a schema
cannot make (probes, drain timing against the config, security context
against the Dockerfile, secrets), and `sluice check` on the rendered
ConfigMap's sluice.toml with the placeholder values of secrets.env.example.
Then `sluice check` on the docker compose example's config.

Exit 0 if everything passed; otherwise every problem is printed and exit 1.
"""

import copy
import json
import math
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parent.parent
OVERLAYS = REPO / "deploy" / "k8s" / "overlays"
# The preStop `sleep` action is beta (on by default) from Kubernetes 1.30.
OLDEST_K8S = "1.30.0"
SECRET = "sluice-secrets"
# What the grace period must leave after preStop and the drain: the actors
# stopping and the spend store committing.
MARGIN_S = 5
VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def dockerfile():
    """USER, EXPOSE, CMD's --config and the directories COPY --chown gives
    the user: what the manifests must agree with."""
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    runtime = text.split("\nFROM ")[-1]
    lines = [line.strip() for line in runtime.splitlines() if line.strip() and not line.strip().startswith("#")]

    def last(op):
        found = [line[len(op):].strip() for line in lines if line.startswith(op + " ")]
        if not found:
            raise SystemExit(f"Dockerfile: no {op} in the runtime stage")
        return found[-1]

    uid, gid = (int(x) for x in last("USER").split(":"))
    cmd = json.loads(last("CMD"))
    owned = []
    for line in lines:
        m = re.match(r"COPY\s+.*--chown=(\d+):(\d+)\s+\S+\s+(\S+)$", line)
        if m and (int(m[1]), int(m[2])) == (uid, gid):
            owned.append(m[3])
    return {
        "uid": uid,
        "gid": gid,
        "port": int(last("EXPOSE")),
        "config": cmd[cmd.index("--config") + 1],
        "data_dirs": owned,
    }


def toml_vars(value):
    """The ${VAR}s of a parsed TOML's string values (comments do not count)."""
    if isinstance(value, str):
        return set(VAR.findall(value))
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return set().union(*(toml_vars(v) for v in value)) if value else set()
    return set()


def env_file(path):
    """KEY=value lines, as `kubectl create secret --from-env-file` reads them."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value
    return out


def find(docs, kind, name=None, prefix=None):
    for d in docs:
        n = d.get("metadata", {}).get("name", "")
        if d.get("kind") == kind and (name is None or n == name) and (prefix is None or n.startswith(prefix)):
            return d
    return None


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_overlay(docs, secrets, image):
    """Problems of one rendered overlay, as sentences; [] when it is right.
    Returns (problems, toml_text)."""
    problems = []
    p = problems.append
    if any(d.get("kind") == "Secret" for d in docs):
        p("the rendered output contains a Secret: secrets are created by hand, never committed")
    dep = find(docs, "Deployment", "sluice")
    cm = find(docs, "ConfigMap", prefix="sluice-config")
    if dep is None or cm is None:
        return ["no Deployment `sluice` or no ConfigMap `sluice-config-*`"], None
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"].get("labels", {})
    if not selects(dep["spec"]["selector"].get("matchLabels"), labels):
        p("the Deployment's selector does not select its own pods")
    svc = find(docs, "Service", "sluice")
    if svc is None or not selects(svc["spec"].get("selector"), labels):
        p("no Service `sluice` selecting the pods")
    pdb = find(docs, "PodDisruptionBudget")
    if pdb is None or not selects(pdb["spec"].get("selector", {}).get("matchLabels"), labels):
        p("no PodDisruptionBudget selecting the pods")
    containers = [c for c in pod["containers"] if c["name"] == "sluice"]
    if not containers:
        return problems + ["no container `sluice`"], None
    c = containers[0]

    # The config: mounted where --config reads it, from the generated ConfigMap.
    args = c.get("args", [])
    config = args[args.index("--config") + 1] if "--config" in args else None
    if config != image["config"]:
        p(f"--config is {config}, the image's CMD reads {image['config']}")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    cfg_dir, _, cfg_key = (config or "").rpartition("/")
    cfg_mount = mounts.get(cfg_dir)
    cfg_volume = volumes.get(cfg_mount["name"]) if cfg_mount else None
    if not cfg_volume or cfg_volume.get("configMap", {}).get("name") != cm["metadata"]["name"]:
        p(f"{cfg_dir} is not a mount of the ConfigMap {cm['metadata']['name']}")
    text = cm.get("data", {}).get(cfg_key)
    if text is None:
        return problems + [f"the ConfigMap has no key {cfg_key}"], None
    try:
        toml = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return problems + [f"{cfg_key} is not TOML: {e}"], None
    server = toml.get("server", {})

    # Listening where the probes and the Service knock.
    host, _, port = server.get("listen", "127.0.0.1:8080").rpartition(":")
    if host not in ("0.0.0.0", "[::]"):
        p(f"server.listen host {host} is not reachable from the kubelet or the Service (use 0.0.0.0)")
    http = [x for x in c.get("ports", []) if x.get("name") == "http"]
    if not http or http[0]["containerPort"] != int(port) or int(port) != image["port"]:
        p(f"server.listen port {port}, the container port `http` and the image's EXPOSE {image['port']} differ")
    if svc is not None and not any(x.get("targetPort") == "http" for x in svc["spec"]["ports"]):
        p("the Service does not target the port `http`")
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") != "http":
            p(f"{probe} must GET {path} on port http")

    res = c.get("resources", {})
    for need in ("requests.cpu", "requests.memory", "limits.memory"):
        group, _, key = need.partition(".")
        if key not in res.get(group, {}):
            p(f"resources.{need} is not set")
    if "cpu" not in res.get("limits", {}) and server.get("workers", 0) == 0:
        p("no CPU limit and server.workers = 0: Sluice would start one worker per node core")

    # Non-root, as the image's user, with a read-only root file system.
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    eff = {**psc, **csc}
    if eff.get("runAsNonRoot") is not True:
        p("runAsNonRoot is not true")
    if (eff.get("runAsUser"), eff.get("runAsGroup")) != (image["uid"], image["gid"]):
        p(f"runAsUser/runAsGroup {eff.get('runAsUser')}/{eff.get('runAsGroup')} "
          f"are not the Dockerfile's USER {image['uid']}:{image['gid']}")
    if csc.get("readOnlyRootFilesystem") is not True:
        p("readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        p("allowPrivilegeEscalation is not false")
    if "ALL" not in csc.get("capabilities", {}).get("drop", []):
        p("capabilities are not all dropped")

    # Drain: preStop delay + shutdown_timeout_ms + margin within the grace period.
    sleep = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    drain = math.ceil(server.get("shutdown_timeout_ms", 30000) / 1000)
    if not sleep:
        p("no preStop sleep: the pod would stop taking requests before load balancers stop sending them")
    elif grace < sleep + drain + MARGIN_S:
        p(f"terminationGracePeriodSeconds {grace} < preStop {sleep} s + shutdown_timeout_ms {drain} s "
          f"+ {MARGIN_S} s: streams would be killed mid-drain")

    # State: a spend store on a persistent volume of one pod, or Redis.
    replicas = dep["spec"].get("replicas", 1)
    store = toml.get("spend", {}).get("store")
    if store is not None:
        mount = mounts.get(str(Path(store).parent))
        volume = volumes.get(mount["name"]) if mount else None
        if not volume or "persistentVolumeClaim" not in volume or mount.get("readOnly"):
            p(f"spend store {store}: its directory is not a writable persistent volume")
        if mount and mount["mountPath"] not in image["data_dirs"]:
            p(f"spend store {store}: not in the image's data directory {image['data_dirs']}")
        if replicas != 1 or dep["spec"].get("strategy", {}).get("type") != "Recreate":
            p("a spend store file needs one replica and the Recreate strategy (one process holds it)")
    redis = toml.get("shared", {}).get("redis_url")
    if replicas > 1 and redis is None:
        p(f"{replicas} replicas without [shared]: every limit would count {replicas} times")
    if redis is not None:
        url = urlsplit(VAR.sub(lambda m: secrets.get(m[1], ""), redis))
        if url.hostname and "." not in url.hostname:
            rsvc = find(docs, "Service", url.hostname)
            if rsvc is None or not any(x.get("port") == (url.port or 6379) for x in rsvc["spec"]["ports"]):
                p(f"[shared] redis_url names {url.hostname}:{url.port or 6379}, which no Service provides")

    # Secrets: one Secret by name; every variable listed in secrets.env.example.
    refs = [e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
    used = toml_vars(toml)
    for d in docs:
        for tmpl in [d.get("spec", {}).get("template", {}).get("spec", {})]:
            for ct in tmpl.get("containers", []):
                for e in ct.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        refs.append(ref["name"])
                        used.add(ref["key"])
    if set(refs) != {SECRET}:
        p(f"pods read the Secrets {sorted(set(refs))}, expected only {SECRET}")
    if used != set(secrets):
        p(f"secrets.env.example lists {sorted(secrets)}, the config and manifests use {sorted(used)}")
    return problems, text


def self_test(docs, secrets, image):
    """The checks catch what they are for: each mutation must be reported."""
    def pod(d):
        return find(d, "Deployment", "sluice")["spec"]["template"]["spec"]

    def container(d):
        return pod(d)["containers"][0]

    mutations = {
        "short grace period": lambda d: pod(d).update(terminationGracePeriodSeconds=10),
        "other uid": lambda d: pod(d)["securityContext"].update(runAsUser=1000),
        "no readiness probe": lambda d: container(d).pop("readinessProbe"),
        "writable root": lambda d: container(d)["securityContext"].update(readOnlyRootFilesystem=False),
        "committed Secret": lambda d: d.append({"kind": "Secret", "metadata": {"name": SECRET}}),
    }
    failures = []
    for name, mutate in mutations.items():
        d = copy.deepcopy(docs)
        mutate(d)
        if not check_overlay(d, secrets, image)[0]:
            failures.append(f"self-test: the checks did not notice: {name}")
    if not check_overlay(docs, {**secrets, "UNUSED_VAR": "x"}, image)[0]:
        failures.append("self-test: the checks did not notice an unused variable in secrets.env.example")
    return failures


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def sluice_check(sluice, path, env):
    r = run([sluice, "check", "--config", str(path)], env={"PATH": os.environ.get("PATH", ""), **env})
    if r.returncode != 0 or "ok" not in r.stdout:
        return [f"sluice check {path}:\n{r.stderr}{r.stdout}"]
    print(f"  {r.stdout.strip()}")
    return []


def main():
    kubectl, validate, sluice, out = sys.argv[1:5]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    image = dockerfile()
    failed = []
    overlays = sorted(d for d in OVERLAYS.iterdir() if (d / "kustomization.yaml").is_file())
    if not overlays:
        raise SystemExit(f"no overlays under {OVERLAYS}")
    for overlay in overlays:
        name = overlay.name
        print(f"== overlay {name}")
        r = run([kubectl, "kustomize", str(overlay)])
        if r.returncode != 0:
            failed.append(f"{name}: kubectl kustomize failed:\n{r.stderr}")
            continue
        rendered = out / f"{name}.yaml"
        rendered.write_text(r.stdout)
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        print(f"  rendered {len(docs)} resources -> {rendered.relative_to(REPO) if rendered.is_relative_to(REPO) else rendered}")

        for version in (OLDEST_K8S, None):
            cmd = [validate, "--strict", "--quiet"] + (["-k", version] if version else []) + [str(rendered)]
            v = run(cmd)
            # A kind without a schema is only a WARN with exit 0: fail on it too.
            noise = [line for line in v.stdout.splitlines() if line.split(" ", 1)[0] in ("WARN", "ERROR", "FATAL")]
            if v.returncode != 0 or noise:
                failed.append(f"{name}: kubernetes-validate {version or 'latest'}:\n{v.stdout}{v.stderr}")
            else:
                print(f"  schemas ok (Kubernetes {version or 'latest known to kubernetes-validate'})")

        secrets = env_file(overlay / "secrets.env.example")
        problems, text = check_overlay(docs, secrets, image)
        problems += self_test(docs, secrets, image)
        failed += [f"{name}: {x}" for x in problems]
        if not problems:
            print("  probes, drain, security context, state and secrets ok")
        if text is not None:
            toml = out / f"{name}.sluice.toml"
            toml.write_text(text)
            failed += [f"{name}: {x}" for x in sluice_check(sluice, toml, secrets)]

    print("== docker compose config")
    compose = REPO / "deploy" / "compose" / "sluice.toml"
    fake = {v: f"fake-{v.lower()}" for v in toml_vars(tomllib.loads(compose.read_text()))}
    failed += sluice_check(sluice, compose, fake)

    if failed:
        print("\nFAILED:\n" + "\n".join(f"- {x}" for x in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
