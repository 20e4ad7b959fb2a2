"""Security of the step images build.py pushed for this session (conftest's ``built_images``): non-root,
working read-only without capabilities, no credentials anywhere, OCI labels, hash-locked dependencies;
and hadolint on every Dockerfile."""
from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
from hardening_support import (
    REPO,
    RUNTIME_DIR,
    docker_run,
    image_config,
    make_upstream,
    recipe,
    the_error_line,
)

from mlops_runtime import storage

pytestmark = pytest.mark.docker

BUCKET = "mlops-test"
STEPS = sorted(p.parent.name for p in (REPO / "components").glob("*/component.yaml"))
DOCKERFILES = sorted(REPO.glob("components/*/Dockerfile"))
LOCK = RUNTIME_DIR / "requirements.lock"
HADOLINT = str(Path(sys.executable).parent / "hadolint")  # the dev extra's, beside this interpreter
OCI_LABELS = ("version", "revision", "source", "created")

# Credentials as they look when leaked, each behind a literal anchor so 400 MB of files scan in seconds:
# AWS key ids (base32 after the prefix), secret key assignments, private keys, GitHub and Slack tokens,
# URLs carrying a password, and this repository's own test and demo secrets.
SECRET_PATTERNS = [((prefix,), re.compile(rb"(?<![A-Z0-9])" + prefix + rb"[A-Z2-7]{16}(?![A-Z0-9])"))
                   for prefix in (b"AKIA", b"ASIA", b"ABIA", b"ACCA")] + [
    ((b"-----BEGIN ",),
     re.compile(rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----")),
    ((b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"),
     re.compile(rb"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36}(?![A-Za-z0-9_])")),
    ((b"github_pat_",), re.compile(rb"github_pat_[A-Za-z0-9_]{82}")),
    ((b"xox",), re.compile(rb"xox[abprs]-[0-9A-Za-z-]{10,}")),
    ((b"://",), re.compile(rb"://([^/\s:@'\"<>]{1,64}|<[a-z]+>):([^/\s:@'\"<>]{3,64}|<[a-z]+>)@[A-Za-z0-9.-]+")),
    ((b"-secret",), re.compile(rb"mlops-(?:test|demo)-secret|battery-admin-secret|hardening-secret")),
]
SECRET_ASSIGNMENT = re.compile(rb"(?:aws_secret_access_key|aws_session_token)\s*[=:]\s*['\"]?[A-Za-z0-9/+=]{16,}")
CREDENTIAL_FILE = re.compile(r"(^|/)(\.aws/(credentials|config)|\.netrc|_netrc|\.docker/config\.json|\.git-credentials"
                             r"|\.pypirc|\.npmrc|\.ssh/[^/]+|id_(rsa|dsa|ecdsa|ed25519)(\.pub)?|\.boto|\.s3cfg)$")
SECRET_NAME = re.compile(r"(?i)secret|token|passw|credential|access_key|api_key|private_key|^AWS_")
# What upstream packages' documentation uses in place of credentials.
PLACEHOLDERS = {b"user", b"username", b"<username>", b"<user>", b"***", b"password", b"<password>", b"pass",
                b"REDACTED"}  # opentelemetry's semantic-convention docs (in the serve image)
UPSTREAM_EXAMPLES = {("botocore/data/iam/2010-05-08/examples-1.json", b"-----BEGIN DSA PRIVATE KEY-----")}


def find_secrets(data: bytes) -> list[re.Match]:
    found = [match for anchors, pattern in SECRET_PATTERNS if any(a in data for a in anchors)
             for match in pattern.finditer(data)]
    lowered = data.lower()
    if b"aws_secret_access_key" in lowered or b"aws_session_token" in lowered:
        found += SECRET_ASSIGNMENT.finditer(lowered)
    return found


def is_documented_example(path: str, match: re.Match) -> bool:
    text = match.group()
    if text.endswith(b"EXAMPLE") or any(path.endswith(p) and text == m for p, m in UPSTREAM_EXAMPLES):
        return True
    return text.startswith(b"://") and bool(set(match.groups()) & PLACEHOLDERS)


@pytest.fixture(scope="module")
def images(built_images) -> dict[str, str]:
    assert sorted(built_images.images) == STEPS, "build.py did not build every step"
    return built_images.images


@pytest.fixture(scope="module")
def upstream() -> str:
    return make_upstream(f"s3://{BUCKET}/hardening-images-{uuid.uuid4().hex[:8]}/upstream")


@pytest.mark.parametrize("step", STEPS)
def test_image_runs_as_non_root(images, step):
    user = image_config(images[step])["User"]
    assert user and user.split(":")[0] not in ("0", "root"), f"Config.User is {user!r}"
    ran = docker_run(images[step], "-u", flags=("--entrypoint", "id"))
    assert ran.returncode == 0, ran.stderr
    assert int(ran.stdout) != 0


@pytest.mark.parametrize("step", STEPS)
def test_help_works_read_only_without_capabilities(images, step):
    ran = docker_run(images[step], "--help")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("Usage: ") and "--help" in ran.stdout


# serve is a long-running server: tests/serving runs it read-only without capabilities and sends it requests.
@pytest.mark.parametrize("step", [step for step in STEPS if step != "serve"])
def test_a_real_run_works_read_only_without_capabilities(images, upstream, step):
    output_dir = f"{upstream.rsplit('/', 1)[0]}/{step}"
    ran = docker_run(images[step], *recipe(step, upstream, output_dir), s3=True)
    assert ran.returncode == 0, ran.stderr
    json.loads(ran.stdout.splitlines()[-1])  # its outputs, as one JSON line
    assert storage.list_uris(output_dir), "nothing was written"


def test_a_real_run_writes_to_a_local_bind_mount(images, tmp_path):
    mount = tmp_path / "out"
    mount.mkdir()
    subprocess.run(["chown", "10001:10001", str(mount)], check=True)  # the image's user owns its output folder
    ran = docker_run(images["load_data"], "--dataset", "wine", "--output-dir", "/out/data",
                     flags=("--network", "none", "--volume", f"{mount}:/out"))
    assert ran.returncode == 0, ran.stderr
    assert (mount / "data/data.parquet").stat().st_size > 0


def test_a_failing_run_reports_one_error_line(images, tmp_path):
    ran = docker_run(images["split"], "--data-uri", "/nowhere/data.parquet", "--output-dir", "/tmp/out",
                     flags=("--network", "none"))
    assert ran.returncode == 3, ran.stderr
    assert the_error_line(ran.stderr).startswith("error: --data-uri: /nowhere/data.parquet: ")


@pytest.mark.parametrize("step", STEPS)
def test_no_credentials_in_environment_labels_or_history(images, step):
    config = image_config(images[step])
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    labels = config.get("Labels") or {}
    assert not [name for name in env if SECRET_NAME.search(name)], env
    assert not [name for name in labels if SECRET_NAME.search(name)], labels
    history = subprocess.run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", images[step]],
                             capture_output=True, text=True, check=True).stdout
    texts = {"env": "\n".join(env.values()), "labels": "\n".join(labels.values()), "history": history}
    for where, text in texts.items():
        assert not find_secrets(text.encode()), f"{where}: {[m.group() for m in find_secrets(text.encode())]}"
    # build arguments and RUN lines that set a secret-looking variable
    assert not re.search(r"(?i)\b\w*(secret|token|passw|access_key)\w*=\S", history), history


def scan_layers(images: list[str]) -> tuple[int, list[tuple[str, str]]]:
    """Every file of every layer of ``images`` (``docker save``, each shared layer once): credential files
    by name, and credential values in every file that is not an ELF binary. Returns (files, findings)."""
    findings: list[tuple[str, str]] = []
    scanned = 0
    save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
    assert save.stdout is not None
    with tarfile.open(fileobj=save.stdout, mode="r|") as archive:
        for blob in archive:
            if not blob.isfile():
                continue
            try:
                layer = tarfile.open(fileobj=archive.extractfile(blob), mode="r|")
            except tarfile.ReadError:  # the image configs and manifests (inspected above)
                continue
            with layer:
                for member in layer:
                    if CREDENTIAL_FILE.search(member.name):
                        findings.append((member.name, "credential file"))
                    if not member.isfile():
                        continue
                    data = layer.extractfile(member).read()
                    scanned += 1
                    if data.startswith(b"\x7fELF"):
                        continue
                    for match in find_secrets(data):
                        if not is_documented_example(member.name, match):
                            findings.append((member.name, match.group()[:40].decode(errors="replace")))
    assert save.wait(timeout=600) == 0, "docker save failed"
    return scanned, findings


def test_no_credential_files_or_values_in_any_layer(images):
    scanned, findings = scan_layers(sorted(set(images.values())))
    assert scanned > 10_000  # the whole filesystem was read, not an empty stream
    assert findings == []


def test_the_layer_scan_finds_a_planted_credential(tmp_path):
    """The scan itself works: a throwaway image with a planted key and a ~/.aws/credentials is caught."""
    key_id = "AKIA" + "Q3ZXJ5LPRHW2N7TV"
    index = "://ci-bot:Zq8vLx2wTt@pypi.example"
    (tmp_path / "credentials").write_text(f"[default]\naws_access_key_id = {key_id}\n")
    (tmp_path / "pip.conf").write_text(f"[global]\nindex-url = https{index}/simple\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY credentials /root/.aws/credentials\n"
                                         "COPY pip.conf /etc/pip.conf\n")
    tag = f"hardening-planted-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(tmp_path)], check=True, capture_output=True)
    try:
        _, findings = scan_layers([tag])
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)
    assert ("root/.aws/credentials", "credential file") in findings
    assert ("root/.aws/credentials", key_id) in findings
    assert ("etc/pip.conf", index) in findings


@pytest.mark.parametrize("step", STEPS)
def test_oci_labels(images, step):
    labels = image_config(images[step]).get("Labels") or {}
    values = {name: labels.get(f"org.opencontainers.image.{name}", "") for name in OCI_LABELS}
    assert all(values.values()), f"missing or empty OCI labels: {[n for n, v in values.items() if not v]}"
    assert values["version"] == (REPO / "VERSION").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?", values["revision"]), values["revision"]
    # https for a clone of a hosted repository; file:// for a build from a local checkout or clone
    assert re.fullmatch(r"(https|file)://\S+", values["source"]), values["source"]
    created = dt.datetime.strptime(values["created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert created <= dt.datetime.now(dt.UTC)


def locked_versions(step: str | None = None) -> dict[str, str]:
    """The runtime lock's pins, plus the step's own lock (components/<step>/requirements.lock) if it has one."""
    locks = [LOCK] + ([REPO / "components" / step / "requirements.lock"] if step else [])
    pins = [pin for lock in locks if lock.is_file()
            for pin in re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)", lock.read_text(), flags=re.MULTILINE)]
    return {normalize(name): version for name, version in pins}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_runtime_layer_installs_the_lock_with_require_hashes():
    dockerfile = (RUNTIME_DIR / "Dockerfile").read_text()
    assert re.search(r"uv pip install [^\n]*--require-hashes --no-deps\s*\\\n\s*-r /out/opt/mlops/requirements\.lock",
                     dockerfile)
    assert "COPY requirements.lock /out/opt/mlops/requirements.lock" in dockerfile
    assert re.search(r"pip install [^\n]*--require-hashes -r /build/requirements\.build\.lock", dockerfile)
    for lock in (LOCK, RUNTIME_DIR / "requirements.build.lock"):
        requirements = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", lock.read_text())
        pinned = [block for block in requirements if re.match(r"[A-Za-z0-9_.-]+==", block)]
        assert pinned and all("--hash=sha256:" in block for block in pinned), lock


INSTALLED = ("import importlib.metadata as m, json; "
             "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")


@pytest.mark.parametrize("step", STEPS)
def test_the_venv_holds_exactly_the_locked_versions(images, step):
    """Nothing but the lock: no pip, setuptools or wheel, and no build tool (uv, cyclonedx) left behind."""
    ran = docker_run(images[step], "-c", INSTALLED, flags=("--entrypoint", "python"))
    assert ran.returncode == 0, ran.stderr
    installed = {normalize(name): version for name, version in json.loads(ran.stdout).items()}
    assert installed == locked_versions(step)


def test_no_headers_tests_or_build_tools_in_the_final_venv(images):
    probe = ("find /opt/venv \\( -name '*.h' -o -name '*.pxd' -o -name '*.pyx' -o -type d -name tests "
             "-o -name pip -o -name 'setuptools*' -o -name uv -o -name 'cyclonedx*' \\) -print; echo ---; "
             "ls /opt/venv/lib/python3.11/site-packages/numpy.libs /opt/venv/lib/python3.11/site-packages/scipy.libs")
    ran = docker_run(images["train"], "-c", probe, flags=("--entrypoint", "sh"))
    assert ran.returncode == 0, ran.stderr
    found, libs = ran.stdout.split("---\n")
    assert found == ""
    assert libs.count("openblas") == 2  # the vendored .libs are kept


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: str(path.relative_to(REPO)))
def test_hadolint(dockerfile: Path):
    done = subprocess.run([HADOLINT, str(dockerfile)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    done = subprocess.run([HADOLINT, str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3007" in done.stdout
