# Builds the shared runtime image and one image per step. Plain use:
#   docker buildx bake                                  every step, local names mlops-components/<step>
#   docker buildx bake train evaluate                   some steps
#   REGISTRY=127.0.0.1:5000 GIT_SHA=$(git rev-parse --short HEAD) docker buildx bake --push
#   docker buildx bake --set '*.args.BASE_IMAGE=my/python:3.11'   (or BASE_IMAGE=... docker buildx bake)
# build.py drives this file, fills the variables from the VERSION file and git, and pins component.yaml;
# it also gives each target the revision, created label and SOURCE_DATE_EPOCH of the last commit that
# changed it (a second bake file), which makes the images reproducible; plain bake leaves them out.

variable "REGISTRY" {
  default = ""
}

# The default must equal the VERSION file (tests/build checks it); build.py passes the file's value.
variable "VERSION" {
  default = "0.1.0"
}

variable "GIT_SHA" {
  default = ""
}

variable "SOURCE" {
  default = ""
}

variable "BASE_IMAGE" {
  default = "python:3.11-slim"
}

# Every step directory (components/<step>/ with main.py, component.yaml and Dockerfile); tests/build
# checks this list against the directories. A function, not a variable: bake 0.13 cannot take a list
# variable from the environment, and would fail on any STEPS environment variable.
function "steps" {
  params = []
  result = ["load_data", "split", "train", "evaluate", "deploy", "detect_drift", "check_performance", "make_batch", "decide_retrain", "claim_batches", "complete_batches", "build_training_set", "notify", "estimate_performance", "history_report", "serve", "join_labels", "render_serving", "export_onnx"]
}

function "repository" {
  params = [name]
  result = notequal(REGISTRY, "") ? "${REGISTRY}/mlops-components/${name}" : "mlops-components/${name}"
}

function "tags" {
  params = [name]
  result = compact([
    "${repository(name)}:${VERSION}",
    notequal(GIT_SHA, "") ? "${repository(name)}:${VERSION}-${GIT_SHA}" : "",
  ])
}

function "labels" {
  params = [name, description]
  result = {
    for key, value in {
      "org.opencontainers.image.title"       = "mlops-components/${name}"
      "org.opencontainers.image.description" = description
      "org.opencontainers.image.version"     = VERSION
      "org.opencontainers.image.revision"    = GIT_SHA
      "org.opencontainers.image.source"      = SOURCE
      "org.opencontainers.image.licenses"    = "Apache-2.0"
    } : key => value if value != ""
  }
}

group "default" {
  targets = steps()
}

target "runtime" {
  context    = "components/mlops_runtime"
  dockerfile = "Dockerfile"
  args = {
    BASE_IMAGE         = BASE_IMAGE
    MLOPS_VERSION = VERSION
  }
  labels = labels("runtime", "Shared layer of the mlops-components step images: Python, locked dependencies, mlops_runtime")
  tags   = tags("runtime")
}

# The runtime's build stage with uv and the build-tool venv: a step with extra dependencies (its own
# requirements.lock) starts a build stage FROM tools, installs them under /out and copies /out --link.
target "runtime-tools" {
  context    = "components/mlops_runtime"
  dockerfile = "Dockerfile"
  target     = "tools"
  args = {
    BASE_IMAGE = BASE_IMAGE
  }
}

target "step" {
  name       = step
  matrix     = { step = steps() }
  context    = "components/${step}"
  dockerfile = "Dockerfile"
  contexts = {
    runtime = "target:runtime"
    tools   = "target:runtime-tools"
  }
  args = {
    MLOPS_IMAGE        = "${repository(step)}:${VERSION}"
    MLOPS_GIT_REVISION = GIT_SHA
  }
  labels = labels(step, "mlops-components step '${step}', a Kubeflow Pipelines component (components/${step}/component.yaml)")
  tags   = tags(step)
}
