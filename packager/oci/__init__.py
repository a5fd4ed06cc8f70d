"""OCI image layouts on disk: write one, read one, verify it, unpack it into a root file system.

An image here is one architecture inside an OCI layout folder (oci-layout, index.json, blobs/sha256/...)
that holds every blob it references, base layers included, so `skopeo inspect oci:DIR`, `umoci unpack`
and a push need nothing else. Docker media types are read too (bases come in both).

Enters: layout folders and blobs. Leaves: `Image`, `Descriptor`, `LayerStats` and the problems found.
The modules, in the order a layout is met:

- layout.py: media types and names, `Descriptor` and `Image`, blobs by digest, `write_layout`, `read_layout`
- scan.py: `scan_layer` and `verify`, which hash and check layer tars without unpacking them
- rootfs.py: `unpack` (layers applied in order into a root file system), `resolve_inside`, and
  `read_file` (one file of an image, read from its layers without unpacking)

Callers import from here (`from packager import oci`); every public name below is re-exported.
Must not import image, registry, deps or anything that touches the network.
"""

from packager.oci.layout import (
    ANNOTATION_LAYER,
    ANNOTATION_REF_NAME,
    CHUNK,
    DIGEST_RE,
    GZIP_LAYER_TYPES,
    INDEX_TYPES,
    LABEL_MODEL_SHA256,
    LABEL_TITLE,
    LABEL_VERSION,
    LAMBDA_ARCH,
    MANIFEST_TYPES,
    MT_DOCKER_LAYER_GZIP,
    MT_DOCKER_LAYER_TAR,
    MT_DOCKER_LIST,
    MT_DOCKER_MANIFEST,
    MT_OCI_CONFIG,
    MT_OCI_INDEX,
    MT_OCI_LAYER_GZIP,
    MT_OCI_LAYER_TAR,
    MT_OCI_MANIFEST,
    OCI_ARCH,
    OCI_LAYOUT_VERSION,
    Descriptor,
    Image,
    blob_path,
    canonical_json,
    image_from_manifest,
    put_blob_bytes,
    put_blob_file,
    read_layout,
    select_manifest,
    sha256_bytes,
    sha256_file,
    write_layout,
)
from packager.oci.rootfs import find_members, read_file, resolve_inside, unpack
from packager.oci.scan import LayerStats, norm_name, scan_layer, verify

__all__ = [
    "ANNOTATION_LAYER",
    "ANNOTATION_REF_NAME",
    "CHUNK",
    "DIGEST_RE",
    "GZIP_LAYER_TYPES",
    "INDEX_TYPES",
    "LABEL_MODEL_SHA256",
    "LABEL_TITLE",
    "LABEL_VERSION",
    "LAMBDA_ARCH",
    "MANIFEST_TYPES",
    "MT_DOCKER_LAYER_GZIP",
    "MT_DOCKER_LAYER_TAR",
    "MT_DOCKER_LIST",
    "MT_DOCKER_MANIFEST",
    "MT_OCI_CONFIG",
    "MT_OCI_INDEX",
    "MT_OCI_LAYER_GZIP",
    "MT_OCI_LAYER_TAR",
    "MT_OCI_MANIFEST",
    "OCI_ARCH",
    "OCI_LAYOUT_VERSION",
    "Descriptor",
    "Image",
    "LayerStats",
    "blob_path",
    "canonical_json",
    "find_members",
    "image_from_manifest",
    "norm_name",
    "put_blob_bytes",
    "put_blob_file",
    "read_file",
    "read_layout",
    "resolve_inside",
    "scan_layer",
    "select_manifest",
    "sha256_bytes",
    "sha256_file",
    "unpack",
    "verify",
    "write_layout",
]
