"""Dummy AWS credentials for the Bedrock emulator, with nothing of the machine's own AWS setup
(profiles, role or container credentials, retry mode, endpoint overrides) leaking in."""

from __future__ import annotations

__all__ = ["AWS_VARIABLES", "dummy_aws_environment"]

# Variables botocore reads that would change which credentials, endpoint or retries it uses.
AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_RETRY_MODE",
    "AWS_MAX_ATTEMPTS",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
)


def dummy_aws_environment(config_file: str, credentials_file: str) -> dict[str, str]:
    """What to set once `AWS_VARIABLES` are removed: test credentials, the given (empty or absent)
    config and credentials files, and no instance-metadata lookups."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": config_file,
        "AWS_SHARED_CREDENTIALS_FILE": credentials_file,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
