"""The export stage: ModelSpec -> OnnxArtifact (model.onnx + model.json in the build folder).

Enters: a resolved ModelSpec (config/). Leaves: an ONNX file checked against the original model on the samples,
and its model.json (signature, profile, parity). Imports no image, registry or local code.
"""
