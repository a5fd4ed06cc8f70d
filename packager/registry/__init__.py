"""The publish stage: Image -> ImageRef (repository@sha256:...), recorded in mlpack.lock.json.

Enters: an OCI layout written by `mlpack build` (or a model project holding one). Leaves: a pushed,
digest-pinned reference and its lock entry. The only package that speaks HTTP to container registries
(the OCI distribution API); AWS (ECR repositories and credentials) is reached through packager/aws.py.

In order:
  ref.py          image references: text -> ImageRef (no I/O)
  transport.py    HTTP to one registry: authentication, retries, streaming, error bodies
  client.py       the distribution API over it: manifests and blobs, pulled and pushed (RegistryClient)
  destination.py  what is pushed and where: the source image, the destination ImageRef, its client and
                  credentials, and for ECR the repositories to ask and create with
  push.py         plan, then act: the repository to create, skip/mount/upload per blob, manifest, tag;
                  then the lock entry

ref, transport and client are plumbing: the image stage uses them too, to pull base images.
destination and push are the stage itself.
"""
