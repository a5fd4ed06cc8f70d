"""The export stage: ModelSpec -> OnnxArtifact (model.onnx + model.json in the build folder).

Enters: a resolved ModelSpec (config/). Leaves: an ONNX file checked against the original model on the samples,
and its model.json (signature, profile, parity; written and read through handlers/model_json.py). Imports no
image, registry or local code.

The modules, in pipeline order:

- pipeline.py: `export` and `read_artifact`, the steps below in order; writes both files, model.json last
- staleness.py: digests of what determines an export (inputs_hash), to skip one that is current
- sources.py: load the source model and the samples
- convert.py: the model to ONNX with stable bytes, and an onnxruntime session over it
- converters.py: skl2onnx converters for XGBoost and LightGBM (onnxmltools) and HistGradientBoosting,
  with tree thresholds exact in float32
- parity.py: run the samples through the ONNX model and compare with the original
- describe.py: signature, task and roles, feature and label names, versions, the samples' profile
"""
