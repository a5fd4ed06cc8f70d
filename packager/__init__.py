"""mlpack's build side: the `mlpack` command and the stages it drives, one sub-package per stage, in
the order a model goes through them (docs/ARCHITECTURE.md walks one model through them):

  config/    mlpack.toml -> ModelSpec; mlpack.lock.json (which digest each model deploys)
  export/    ModelSpec -> model.onnx + model.json, checked against the original model
  image/     model + base + dependencies -> an OCI image layout on disk, without Docker
  registry/  image layout -> pushed image, pinned by digest in mlpack.lock.json
  local/     an image or export, run the way Lambda runs it (mlpack invoke / serve)
  cli/       the command line: parse, call one stage, print

Beside them: oci/ (the on-disk image format every stage shares), aws.py (the one door to AWS),
errors.py, fsutil.py. A stage imports only the stages before it; only cli/ talks to the terminal
(both checked by tests/lint).
"""
