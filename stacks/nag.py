"""Every cdk-nag (AwsSolutions pack) finding mlpack accepts, with its reason, in one place.

Constructs call `acknowledge(scope, rule)`; this records a CDK validation acknowledgment (core
aws-cdk-lib, so stacks/ needs no cdk-nag at run time). tests/stacks check that the pack reports
nothing else. No AWS calls.
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
    "AwsSolutions-APIG4#none": "The model's owner chose a public endpoint explicitly (api.auth = 'none' with "
    "api.public = true in mlpack.toml; auth 'none' alone is refused); throttling still applies.",
}


def acknowledge(scope: IConstruct, key: str, *findings: str) -> None:
    """Accept the finding `key` (a REASONS key; a '#variant' suffix picks the reason) for scope and below.
    findings: for rules that report each finding with its own id (rule[finding], e.g. IAM5's
    `Resource::<arn>`), the findings accepted, each with the key's reason; none: the rule as a whole."""
    rule = key.split("#", 1)[0]
    for id in [f"{rule}[{f}]" for f in findings] or [rule]:
        Validations.of(scope).acknowledge(Acknowledgment(id=id, reason=REASONS[key]))
