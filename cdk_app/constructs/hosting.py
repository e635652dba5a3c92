"""Dashboard hosting: a private S3 bucket behind CloudFront (origin access control).

Built in two steps because the API needs the dashboard's origin (CORS, sign-in callbacks) and the
dashboard needs the API's URL: the bucket and distribution first, then `deploy_site` uploads the
built `web/` with `config.json` — the runtime configuration the dashboard reads at start-up
(`apiBaseUrl`, `mode`, and `auth`: Cognito's hosted UI domain and the app client id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

from aws_cdk import CfnElement, Duration, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from cdk_app.config import AppConfig
from cdk_app.nag import acknowledge

#: The object-level actions CDK's BucketDeployment grants its handler on the asset and site buckets.
_DEPLOYMENT_S3_ACTIONS: Final = ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*")
#: The dashboard talks to the API (another origin) and Cognito; nothing else.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self' https://*.amazonaws.com https://*.amazoncognito.com; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self' https://*.amazoncognito.com"
)


class Hosting(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        if not (config.web_dist_path / "index.html").is_file():
            raise FileNotFoundError(
                f"{config.web_dist_path}/index.html is missing: build the dashboard first (`make web`)"
            )
        removal = config.data_removal_policy

        self.logs_bucket = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(config.log_retention_days))],
            removal_policy=removal,
        )
        self.bucket = s3.Bucket(
            self,
            "Site",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            server_access_logs_bucket=self.logs_bucket,
            server_access_logs_prefix="site/",
            removal_policy=removal,
        )
        headers = cloudfront.ResponseHeadersPolicy(
            self,
            "SecurityHeaders",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=_CSP, override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.STRICT_ORIGIN_WHEN_CROSS_ORIGIN, override=True
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(365), include_subdomains=True, override=True
                ),
            ),
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"{config.prefix} llmtally dashboard",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=headers,
                compress=True,
            ),
            additional_behaviors={
                # The runtime configuration changes on every deploy: never cached.
                "/config.json": cloudfront.BehaviorOptions(
                    origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                    viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                    cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                    response_headers_policy=headers,
                )
            },
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR1",
            "The dashboard is for the deployment's own users wherever they are; access is by Cognito sign-in.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR2",
            "Static files only (no data): WAF is billed per web ACL and request; the API behind Cognito "
            "has its own throttling. Attach a web ACL if your policy requires it.",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR3",
            "CloudFront standard logs need an ACL-enabled bucket; the site bucket's S3 access logs and the "
            "API's access logs record what matters (the site is static).",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR4",
            "The default *.cloudfront.net certificate allows no minimum TLS version to be set; with a custom "
            "domain and certificate the distribution uses TLSv1.2_2021.",
        )

    @property
    def origin(self) -> str:
        return f"https://{self.distribution.distribution_domain_name}"

    def deploy_site(self, runtime_config: Mapping[str, Any]) -> s3deploy.BucketDeployment:
        """Upload the built dashboard and its `config.json`; invalidate CloudFront's cache."""
        deployment = s3deploy.BucketDeployment(
            self,
            "Deploy",
            sources=[
                s3deploy.Source.asset(str(self._config.web_dist_path)),
                s3deploy.Source.json_data("config.json", dict(runtime_config)),
            ],
            destination_bucket=self.bucket,
            distribution=self.distribution,
            distribution_paths=["/*"],
            memory_limit=512,
        )
        self._acknowledge_deployment_handler()
        return deployment

    def _acknowledge_deployment_handler(self) -> None:
        """The BucketDeployment's singleton handler (CDK's own function, at the stack's root)."""
        stack = Stack.of(self)
        site_logical_id = stack.resolve(stack.get_logical_id(cast(CfnElement, self.bucket.node.default_child)))
        handlers = [c for c in stack.node.children if c.node.id.startswith("Custom::CDKBucketDeployment")]
        for handler in handlers:
            acknowledge(
                handler,
                "AwsSolutions-IAM4",
                "CDK's BucketDeployment handler (a CDK-provided function) uses the basic execution policy.",
                applies_to=["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
            )
            acknowledge(
                handler,
                "AwsSolutions-IAM5",
                "CDK's BucketDeployment handler copies the dashboard from the CDK asset bucket into the site "
                "bucket at deploy time: CDK's object-level grants (s3:GetObject*, …) on those two buckets only.",
                applies_to=[
                    *(f"Action::{action}" for action in _DEPLOYMENT_S3_ACTIONS),
                    "Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*",
                    f"Resource::<{site_logical_id}.Arn>/*",
                ],
            )
            acknowledge(
                handler,
                "AwsSolutions-IAM5",
                "cloudfront:CreateInvalidation/GetInvalidation (the dashboard's cache after a deploy) take the "
                "distribution's ARN, which CDK's BucketDeployment handler policy leaves as `*`.",
                applies_to=["Resource::*"],
            )
            acknowledge(
                handler,
                "AwsSolutions-L1",
                "CDK's BucketDeployment handler: its runtime is chosen by aws-cdk-lib, not by this app.",
            )
