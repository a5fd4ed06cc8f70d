"""The CDK side: model projects + mlpack.lock.json -> one CloudFormation stack per model plus a
shared one. plan.py decides which stacks (plain data); assembly.py puts them on a CDK App;
model_stack.py composes one model's constructs (function.py, api.py, notifications.py, alarms.py,
dashboard.py); shared_stack.py holds what an account and region share. Never calls AWS, never
builds or runs anything (checked by tests/lint).
"""
