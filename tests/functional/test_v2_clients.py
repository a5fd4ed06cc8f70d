"""The Open Inference Protocol as KServe and Triton users call it: tritonclient (HTTP) against `mlpack
serve`: liveness, readiness, server and model metadata, inference with JSON and with the binary tensor
data extension (the client's default for outputs), versioned routes, and errors it can decode."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import handler_models as hm
from tests.support.serving import Served

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder, clf, X = hm.iris(tmp_path_factory.mktemp("iris"))
    server = Served([str(folder)])
    assert server.url is not None
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield client, clf, X
    client.close()
    assert server.stop() == 0


def test_health_and_metadata(served):
    client, _, _ = served
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris")
    assert not client.is_model_ready("nope")
    server = client.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata("iris")
    assert meta["name"] == "iris" and meta["inputs"][0]["shape"] == [-1, 4]
    assert client.get_model_metadata("iris", model_version=meta["versions"][0])["name"] == "iris"


@pytest.mark.parametrize("binary_in, binary_out", [(False, False), (True, True), (False, True), (True, False)])
def test_infer_json_and_binary_agree_with_sklearn(served, binary_in, binary_out):
    client, clf, X = served
    meta = client.get_model_metadata("iris")
    x = X[:7].astype(np.float32)
    inp = httpclient.InferInput(meta["inputs"][0]["name"], list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    outs = [httpclient.InferRequestedOutput("probabilities", binary_data=binary_out),
            httpclient.InferRequestedOutput("label", binary_data=binary_out)]
    result = client.infer("iris", [inp], outputs=outs, model_version=meta["versions"][0])
    np.testing.assert_allclose(result.as_numpy("probabilities"), clf.predict_proba(x), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(result.as_numpy("label"), clf.predict(x))


def test_errors_reach_the_client_as_messages(served):
    client, _, X = served
    meta = client.get_model_metadata("iris")
    bad = httpclient.InferInput(meta["inputs"][0]["name"], [2, 3], "FP32")
    bad.set_data_from_numpy(X[:2, :3].astype(np.float32))
    with pytest.raises(InferenceServerException, match=r"expected 4|shape|length"):
        client.infer("iris", [bad])
    with pytest.raises(InferenceServerException, match="no model named 'other'"):
        client.infer("other", [bad])
