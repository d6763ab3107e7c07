"""The container image and the compose file that uses it, checked without a Docker engine (this machine has
none): the Dockerfile parsed (dockerfile-parse) for what an image must be — multi-stage, pinned, non-root,
checked for readiness — and the package it installs built as pip builds it, carrying every file the services
read at run time."""

import re
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

from ops.env import ROOT
from shared.db.bootstrap import SERVICES
from shared.settings import Settings

DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    return [(i["instruction"], i["value"]) for i in DockerfileParser(path=str(DOCKERFILE)).structure
            if i["instruction"] != "COMMENT"]


def final_stage() -> list[tuple[str, str]]:
    found = instructions()
    last_from = max(i for i, (instruction, _) in enumerate(found) if instruction == "FROM")
    return found[last_from:]


def test_the_image_is_built_in_stages_from_pinned_bases_with_the_locked_dependencies():
    bases = [value.split()[0] for instruction, value in instructions() if instruction == "FROM"]
    assert len(bases) == 2 and all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base) for base in bases), bases
    [install] = [value for instruction, value in instructions() if instruction == "RUN" and "pip install" in value]
    assert "--constraint requirements.lock" in install and "--no-cache-dir" in install


def test_the_image_runs_as_a_user_of_its_own_and_reports_readiness():
    final = final_stage()
    [user] = [value for instruction, value in final if instruction == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    [check] = [value for instruction, value in final if instruction == "HEALTHCHECK"]
    assert "/health/ready" in check
    copied = [value for instruction, value in final if instruction in ("COPY", "ADD")]
    assert copied == ["--from=build /venv /venv"], "only the built virtualenv: no sources, tests or secrets"
    env = " ".join(value for instruction, value in final if instruction == "ENV")
    assert "PASSWORD" not in env and "SECRET" not in env


def test_compose_runs_every_service_and_prepare_from_the_image():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in (*SERVICES, "prepare"):
        service = compose[name]
        assert (service["image"], service["build"]["dockerfile"]) == ("oms:dev", "deploy/Dockerfile"), name
        assert "pip" not in " ".join(service["command"]) and "volumes" not in service, name
    assert [compose[name]["command"] for name in SERVICES] == [[f"services.{name}"] for name in SERVICES]


def test_replicas_of_a_compose_service_each_have_a_static_membership_of_their_own(monkeypatch):
    """`docker compose up --scale capture=2` starts two containers from one definition: had it pinned
    OMS_INSTANCE_ID, or had the default been one value for all ("1" until 2026-11-30), both would join capture's
    groups as the same static member and fence each other out for as long as both ran. Each container has a host
    name of its own, the default."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in SERVICES:
        assert "OMS_INSTANCE_ID" not in (compose[name].get("environment") or {}), name
    assert "OMS_INSTANCE_ID" not in (ROOT / "deploy" / "dev.env").read_text()
    monkeypatch.delenv("OMS_INSTANCE_ID", raising=False)
    assert Settings(kafka_bootstrap="kafka:9092").instance_id == socket.gethostname()  # a container's its own
    monkeypatch.setenv("OMS_INSTANCE_ID", "2")  # `oms up` numbers the processes it starts on one host
    assert Settings(kafka_bootstrap="kafka:9092").instance_id == "2"


def test_the_installed_package_carries_what_the_services_read_at_run_time(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("oms-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = {str(path.relative_to(ROOT)) for pattern in ("services/*/migrations/*.sql", "shared/db/migrations/*.sql",
                                                         "services/*/*.toml", "services/*/templates/**/*",
                                                         "ops/console/templates/*", "ops/console/static/*")
              for path in ROOT.glob(pattern) if path.is_file()}
    assert needed and needed <= names, sorted(needed - names)
    assert not any(name.startswith("tests/") for name in names)


def test_the_build_context_leaves_out_what_the_image_does_not_need():
    ignored = set(Path(ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".oms", "tests"} <= ignored
