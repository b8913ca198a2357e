"""Input fields shared by the Kubernetes tools, validated like the API server validates
names, so a name can never smuggle another path (`../secrets`) into a request."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

NAMESPACE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # RFC 1123 label
NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"  # RFC 1123 subdomain

Namespace = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=NAMESPACE,
        description="The namespace.",
        examples=["shop"],
    ),
]


def name_field(description: str, example: str) -> Any:
    """A required object-name field."""
    return Field(
        min_length=1, max_length=253, pattern=NAME, description=description, examples=[example]
    )


def optional_name(description: str, example: str) -> Any:
    """An optional object-name field."""
    return Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=NAME,
        description=description,
        examples=[example],
    )
