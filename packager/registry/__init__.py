"""The publish stage: Image -> ImageRef (repository@sha256:...), recorded in mlpack.lock.json.

The only package that speaks HTTP to container registries (the OCI distribution API); AWS (ECR repositories and
credentials) is reached through packager/aws.py. Enters: an OCI layout. Leaves: a pushed, digest-pinned reference.
"""
