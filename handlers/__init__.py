"""What runs in AWS: the model's Lambda handler (predict.py over the inference package) and the chat
notifier (notify.py with names.py, zipped alone into its own function). handlers/ is copied into
the image as it is, so it imports only the standard library, numpy, onnxruntime, orjson and
pysimdjson (and, in the notifier, the boto3 of Lambda's runtime); never packager/ or stacks/.
contract.py, names.py and model_json.py are what the image, the stacks and the CLI agree on.
"""
