"""ImageRef parsing: docker's defaults, round trips and clear errors."""

from __future__ import annotations

import pytest

from packager.errors import RegistryError
from packager.registry.ref import ImageRef, is_local
from packager.registry.transport import _range_end, _with_query

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("python", "docker.io", "library/python", "latest", None),
        ("python:3.12", "docker.io", "library/python", "3.12", None),
        ("ana/model:v1", "docker.io", "ana/model", "v1", None),
        ("public.ecr.aws/lambda/python:3.12", "public.ecr.aws", "lambda/python", "3.12", None),
        ("127.0.0.1:5000/mlpack/iris", "127.0.0.1:5000", "mlpack/iris", "latest", None),
        ("localhost/x", "localhost", "x", "latest", None),
        (f"127.0.0.1:5000/mlpack/iris@{D}", "127.0.0.1:5000", "mlpack/iris", None, D),
        (f"127.0.0.1:5000/mlpack/iris:1@{D}", "127.0.0.1:5000", "mlpack/iris", "1", D),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlpack/churn:3f2a",
         "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "mlpack/churn", "3f2a", None),
    ],
)
def test_parse(text, registry, repository, tag, digest):
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ImageRef.parse(str(ref)) == ref


def test_default_tag_can_be_left_out():
    ref = ImageRef.parse("127.0.0.1:5000/mlpack/iris", default_tag=None)
    assert ref.tag is None and str(ref) == "127.0.0.1:5000/mlpack/iris"
    with pytest.raises(RegistryError, match="no tag or digest"):
        _ = ref.reference


def test_reference_prefers_the_digest():
    assert ImageRef.parse(f"r.io/a:1@{D}").reference == D
    assert ImageRef.parse("r.io/a:1").reference == "1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not an image reference"),
        ("Upper/Case", "not an image reference"),
        ("has space", "not an image reference"),
        ("https://r.io/a", "not an image reference"),
        ("r.io/a@sha256:abc", "64 lowercase hex"),
        ("r.io/a:-bad", "tag '-bad' is not valid"),
    ],
)
def test_bad_references_say_what_is_wrong(text, message):
    with pytest.raises(RegistryError, match=message) as e:
        ImageRef.parse(text)
    assert e.value.hint


def test_query_parameters_are_merged_not_replaced():
    url = "http://r/v2/a/blobs/uploads/u1?_state=abc&x=1"
    merged = f"http://r/v2/a/blobs/uploads/u1?_state=abc&x=1&digest={D.replace(':', '%3A')}"
    assert _with_query(url, {"digest": D}) == merged
    assert _with_query("http://r/u", {"digest": "d"}) == "http://r/u?digest=d"


def test_range_header():
    assert _range_end("0-1023") == 1024
    assert _range_end("bytes=0-9") == 10
    assert _range_end(None) == 0


def test_local_registries_use_plain_http():
    assert is_local("127.0.0.1:5000") and is_local("localhost:1") and is_local("localhost")
    assert not is_local("public.ecr.aws") and not is_local("10.0.0.1:5000")
