"""Local runs: what would be deployed, run the way Lambda runs it (AWS's runtime client against a local Runtime
API, optionally in the image's own root file system) behind an imitation of API Gateway.

Enters: a model project, an image layout, an export folder or a task root. Leaves: responses. Never reaches AWS.

In order:
  prepare.py      what to run: the target's kind, a project built, an image unpacked into a work folder
                  (removed afterwards) -> a RuntimeCommand, the function's name and timeout
  function.py     the runtime process: the command (this machine's Python, or the image's root under
                  unshare, emulated for another architecture) and LocalFunction, which runs it: events in,
                  results out, restarted after a crash or a timeout
  runtime_api.py  the Lambda Runtime API the runtime process talks to (standard library only)
  front.py        the API Gateway front: HTTP requests -> events, results -> API Gateway's answers
"""
