"""The CDK app: one construct per capability (`cdk_app.constructs`), composed by `cdk_app.stack`."""
