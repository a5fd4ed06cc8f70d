"""Local runs: what would be deployed, run the way Lambda runs it (AWS's runtime client against a local Runtime
API, optionally in the image's own root file system) behind an imitation of API Gateway.

Enters: a model project, an image layout, an export folder or a task root. Leaves: responses. Never reaches AWS.
"""
