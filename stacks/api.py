"""The model's REST API: the routes of handlers/contract.py in front of the function's live alias,
auth (API key + usage plan, IAM, or none), JSON-schema request validation, access logs, outputs.

Never calls AWS; the schema comes in as data (stacks/model_json.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from handlers import contract
from handlers.names import ModelNames
from packager.errors import DeployError
from stacks import nag
from stacks.function import retention

# API Gateway's answer when the body fails the schema, shaped like the handler's errors. escapeJavaScript
# also escapes single quotes, which JSON does not allow, hence the replaceAll (AWS's documented idiom).
BAD_BODY_TEMPLATE = (
    '{"code": "bad_request", "message": $context.error.messageString, '
    '"detail": "$util.escapeJavaScript($context.error.validationErrorString)'
    '.replaceAll("\\\\\'", "\'")", "path": "body"}'
)

# The API's one stage. Alarms and the dashboard name it as this literal: the stage's Ref would make
# the API alarms depend on the deployment, a cycle once CodeDeploy rolls back on those alarms.
STAGE_NAME = "v1"

# KServe / Open Inference Protocol v2: structure only; the handler checks names, shapes and dtypes.
V2_INFER_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "title": "InferRequest",
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "inputs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "datatype": {"type": "string"},
                    "data": {"type": "array"},
                },
            },
        },
    },
}


@dataclass(frozen=True, kw_only=True)
class ModelApiProps:
    """Props of ModelApi.

    model_name: names the API (mlpack-[<environment>-]<model_name>) and its outputs.
    environment: the environment (dev, prod, ...) the API belongs to; None (default) = none.
    handler: the function alias (or function) every route invokes.
    request_schema: JSON schema (draft 4) for POST /predict bodies sent as application/json.
    auth: "api_key" (default; usage plan + key), "iam" (SigV4) or "none".
    public: the owner's explicit decision that the endpoint is public (mlpack.toml api.public); auth "none"
        is refused without it. Default False.
    throttle_rate, throttle_burst: stage-wide throttling (and the usage plan's, with api_key).
    quota_per_day: requests per day per key (api_key only); None = no quota.
    log_retention_days: retention of the access log group.
    stage_name: the deployment stage (default "v1").
    description: the API's description; "" (default) = "mlpack model <model_name>".
    """

    model_name: str
    handler: lambda_.IFunction
    request_schema: dict[str, Any]
    auth: str = "api_key"
    public: bool = False
    throttle_rate: float = 50.0
    throttle_burst: int = 100
    quota_per_day: int | None = None
    log_retention_days: int = 30
    stage_name: str = STAGE_NAME
    description: str = ""
    environment: str | None = None


class ModelApi(Construct):
    """API Gateway REST API for one model."""

    def __init__(self, scope: Construct, id: str, *, props: ModelApiProps) -> None:
        super().__init__(scope, id)
        if props.auth == "none" and not props.public:
            raise DeployError(f"model {props.model_name}: api.auth = 'none' without api.public = true",
                              hint="confirm the public endpoint with api.public = true in mlpack.toml, or choose "
                              "api.auth = 'api_key' or 'iam'")
        names = ModelNames(props.model_name, props.environment)
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=retention(props.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.api = self._rest_api(props, names)
        self._add_routes(props, names)
        # Refusals by the schema never reach the handler: answer in the handler's error shape.
        self.api.add_gateway_response(
            "BadRequestBody",
            type=apigw.ResponseType.BAD_REQUEST_BODY,
            status_code="400",
            templates={contract.JSON_CONTENT_TYPE: BAD_BODY_TEMPLATE},
        )
        self.key: apigw.IApiKey | None = None
        if props.auth == "api_key":
            self.key = self._add_key_and_usage_plan(props, names)
        CfnOutput(
            self,
            "Endpoint",
            value=self.api.url_for_path(contract.ROUTE_PREDICT[1]),
            description=f"POST predictions here ({props.auth} auth)",
        )
        CfnOutput(self, "BaseUrl", value=self.api.url)

    def _rest_api(self, props: ModelApiProps, names: ModelNames) -> apigw.RestApi:
        """The API and its one stage: throttling, error logging, metrics, JSON access logs."""
        api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=names.api,
            description=props.description or f"mlpack model {props.model_name}",
            binary_media_types=[contract.NPY_CONTENT_TYPE, contract.V2_BINARY_CONTENT_TYPE],
            cloud_watch_role=False,  # the account-wide role lives in the shared stack (one per account)
            endpoint_types=[apigw.EndpointType.REGIONAL],
            deploy_options=apigw.StageOptions(
                stage_name=props.stage_name,
                throttling_rate_limit=props.throttle_rate,
                throttling_burst_limit=props.throttle_burst,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
        )
        nag.acknowledge(api, "AwsSolutions-APIG3")
        nag.acknowledge(api, "AwsSolutions-COG4")
        if props.auth != "iam":
            nag.acknowledge(api, f"AwsSolutions-APIG4#{props.auth}")
        return api

    def _add_routes(self, props: ModelApiProps, names: ModelNames) -> None:
        """Every API route of handlers/contract.py, with the auth of props and JSON bodies checked by schema."""
        # no test-invoke permissions: half the Lambda::Permission resources, and the console test is not needed
        integration = apigw.LambdaIntegration(props.handler, allow_test_invoke=False)
        api_key_required = props.auth == "api_key"
        authorization = apigw.AuthorizationType.IAM if props.auth == "iam" else apigw.AuthorizationType.NONE
        body_validator = self.api.add_request_validator(
            "BodyValidator",
            request_validator_name=names.request_validator,
            validate_request_body=True,
            validate_request_parameters=True,
        )
        predict_model = self.api.add_model(
            "PredictRequest",
            content_type=contract.JSON_CONTENT_TYPE,
            model_name="PredictRequest",
            schema=_json_schema(props.request_schema),
        )
        infer_model = self.api.add_model(
            "InferRequest",
            content_type=contract.JSON_CONTENT_TYPE,
            model_name="InferRequest",
            schema=_json_schema(V2_INFER_SCHEMA),
        )
        models = {contract.ROUTE_PREDICT: predict_model, contract.ROUTE_V2_INFER: infer_model}
        for method, path in contract.API_ROUTES:
            resource = self.api.root.resource_for_path(path)
            model = models.get((method, path))
            resource.add_method(
                method,
                integration,
                api_key_required=api_key_required,
                authorization_type=authorization,
                request_validator=body_validator if model else None,
                request_models={contract.JSON_CONTENT_TYPE: model} if model else None,
            )

    def _add_key_and_usage_plan(self, props: ModelApiProps, names: ModelNames) -> apigw.IApiKey:
        """api_key auth: one key in a usage plan with the stage's throttling and the daily quota."""
        quota = apigw.QuotaSettings(limit=props.quota_per_day, period=apigw.Period.DAY) if props.quota_per_day else None
        plan = self.api.add_usage_plan(
            "UsagePlan",
            name=names.usage_plan,
            throttle=apigw.ThrottleSettings(rate_limit=props.throttle_rate, burst_limit=props.throttle_burst),
            quota=quota,
        )
        plan.add_api_stage(stage=self.api.deployment_stage)
        key = self.api.add_api_key("Key", api_key_name=names.api_key)
        plan.add_api_key(key)
        CfnOutput(
            self,
            "ApiKeyId",
            value=key.key_id,
            description="Get the key with: aws apigateway get-api-key --include-value --api-key <id>",
        )
        return key


def _json_schema(schema: dict[str, Any]) -> apigw.JsonSchema:
    """Turn a plain draft-4 dict into CDK's JsonSchema (snake_case keywords, nested objects)."""
    kw: dict[str, Any] = {}
    # keywords passed through as they are, under CDK's name when it differs (title, required: the same)
    names = {"minItems": "min_items", "maxItems": "max_items", "additionalProperties": "additional_properties",
             "minProperties": "min_properties", "maxProperties": "max_properties"}
    for key, value in schema.items():
        if key == "$schema":
            kw["schema"] = apigw.JsonSchemaVersion.DRAFT4
        elif key == "type":
            kw["type"] = ([apigw.JsonSchemaType(v.upper()) for v in value] if isinstance(value, list)
                          else apigw.JsonSchemaType(value.upper()))
        elif key == "items":
            kw["items"] = _json_schema(value)
        elif key == "properties":
            kw["properties"] = {k: _json_schema(v) for k, v in value.items()}
        elif key == "oneOf":
            kw["one_of"] = [_json_schema(v) for v in value]
        else:
            kw[names.get(key, key)] = value
    return apigw.JsonSchema(**kw)
