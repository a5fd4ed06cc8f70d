"""The image stage: OnnxArtifact + base -> Image (an OCI layout on disk, one architecture), without Docker.

Enters: a resolved ModelSpec (it exports first when the export is stale) and a base. Leaves: an OCI layout and
its build report. Bases come from a registry only through registry/; nothing here pushes.
"""
