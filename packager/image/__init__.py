"""The image stage: OnnxArtifact + base -> Image (an OCI layout on disk, one architecture), without Docker.

Enters: a resolved ModelSpec (it exports first when the export is stale) and a base. Leaves: an OCI layout and
its build report. Bases come from a registry only through registry/; nothing here pushes.

The modules, in the order a build meets them:

- bases.py: the base image (aws, debian, a registry reference, oci:PATH, docker-archive:PATH), every blob
  in the local cache
- pins.py: mlpack.bases.json, the repository's bases pinned by digest
- deps.py: the dependency layer (wheels for the target python and architecture), cached by what determines it
- contents.py: the plan, what each layer holds (base, deps, handler, model), decided before anything is written
- layers.py: deterministic tar.gz layers from the plan's entries
- build.py: executes the plan, composes config and manifest, writes the layout and the build report
- checks.py: Lambda's rules, applied by build.py before writing and by `mlpack check` to a layout on disk
- sbom.py: the image's bill of materials (CycloneDX JSON: OS packages, Python distributions, the model)
- audit.py: the SBOM's packages against vulnerability data (`mlpack audit`), never a silent pass
"""
