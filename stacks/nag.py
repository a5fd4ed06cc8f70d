"""Every cdk-nag (AwsSolutions pack) and checkov finding mlpack accepts, with its reason, in one place.

Constructs call `acknowledge(scope, rule)`; this records a CDK validation acknowledgment (core
aws-cdk-lib, so stacks/ needs no cdk-nag at run time). tests/stacks check that the pack reports
nothing else. checkov's accepted checks are CHECKOV_SKIPS (tests/lint/test_checkov.py). No AWS calls.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def _managed(name: str) -> str:
    return f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/{name}]"


LAMBDA_BASIC = _managed("AWSLambdaBasicExecutionRole")
APIGW_LOGS = _managed("AmazonAPIGatewayPushToCloudWatchLogs")
CODEDEPLOY_LAMBDA = _managed("AWSCodeDeployRoleForLambdaLimited")

REASONS: dict[str, str] = {
    LAMBDA_BASIC: "AWS-maintained policy that only allows writing the function's own CloudWatch logs.",
    APIGW_LOGS: "The role API Gateway requires for access and execution logs; AWS maintains its narrow scope.",
    CODEDEPLOY_LAMBDA: "CodeDeploy's AWS-maintained least-privilege policy for shifting Lambda alias traffic.",
    "AwsSolutions-APIG3": "No WAF: model endpoints are protected by API keys or SigV4 plus usage-plan throttling; "
    "a web ACL would add a fixed monthly cost per model and can be attached later.",
    "AwsSolutions-COG4": "Clients are programs, not Cognito users: auth is an API key with a usage plan or SigV4 "
    "(mlpack.toml api.auth).",
    "AwsSolutions-APIG4#api_key": "Access is controlled by an API key and usage plan (api.auth = 'api_key'); "
    "cdk-nag only counts authorizers.",
    "AwsSolutions-SQS3": "The queue is itself a dead-letter queue: the chat notifier's on-failure destination.",
    "AwsSolutions-IAM5#boundary": "A permissions boundary, not a grant: it caps the chat notifier's role to the "
    "models' namespaces (/mlpack/*, mlpack/*), and KMS decryption only through SSM and Secrets Manager.",
    "AwsSolutions-IAM5#batch": "The batch state machine reads any object under its configured input prefix and "
    "writes under its output prefix (batch.input_prefix/output_prefix in mlpack.toml), runs and stops its own "
    "child executions (their names are Step Functions'), and writes X-Ray traces and log deliveries, whose "
    "actions take no resource.",
    "AwsSolutions-APIG4#none": "The model's owner chose a public endpoint explicitly (api.auth = 'none' with "
    "api.public = true in mlpack.toml; auth 'none' alone is refused); throttling still applies.",
}


# checkov (framework cloudformation) findings on the synthesized templates that mlpack accepts, by check
# id, with why: tests/lint/test_checkov.py passes them as --skip-check and fails on a finding not listed
# here, and on an entry no template triggers any more.
CHECKOV_SKIPS: dict[str, str] = {
    "CKV_AWS_116": "No Lambda DeadLetterConfig: model functions are invoked synchronously by API Gateway (the "
    "client gets the error); the notifier's failed events go to its on-failure destination, an SQS queue "
    "(AWS::Lambda::EventInvokeConfig, which this check does not read).",
    "CKV_AWS_117": "No VPC: the functions reach no private resource; the notifier must reach chat webhooks on the "
    "internet, which in a VPC would take a NAT gateway per environment.",
    "CKV_AWS_120": "No API Gateway cache: every POST /predict carries its own inputs, so a cache would only cost an "
    "hourly fee; GET /health and /openapi.json are cheap.",
    "CKV_AWS_158": "Log groups use CloudWatch Logs' default encryption at rest; mlpack's handlers log request ids, "
    "errors and metric lines, never webhook URLs, and a KMS key per stack would add cost and a key policy.",
    "CKV_AWS_173": "The model function's environment holds no secret (model name, model folder, batch size, metric "
    "namespace); Lambda encrypts it at rest with its own key.",
    "CKV_AWS_26": "The alarm topics carry alarm state changes, no secrets; encrypting them would need a customer "
    "managed KMS key whose policy lets CloudWatch publish (AWS's managed SNS key does not).",
    "CKV_AWS_27": "The notifier's failure queue is encrypted with SQS-managed keys (SqsManagedSseEnabled); the check "
    "only recognises KmsMasterKeyId.",
    "CKV_AWS_59": "Only on APIs whose owner made the endpoint public explicitly (api.auth = 'none' with "
    "api.public = true, validated in mlpack.toml); every other API requires an API key or SigV4.",
    "CKV_AWS_73": "No X-Ray tracing on the stage: it costs per trace, and latency is watched by the api-latency "
    "and duration alarms; a team can turn it on later.",
}


def acknowledge(scope: IConstruct, key: str, *findings: str) -> None:
    """Accept the finding `key` (a REASONS key; a '#variant' suffix picks the reason) for scope and below.
    findings: for rules that report each finding with its own id (rule[finding], e.g. IAM5's
    `Resource::<arn>`), the findings accepted, each with the key's reason; none: the rule as a whole."""
    rule = key.split("#", 1)[0]
    for id in [f"{rule}[{f}]" for f in findings] or [rule]:
        Validations.of(scope).acknowledge(Acknowledgment(id=id, reason=REASONS[key]))
