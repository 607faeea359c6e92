"""The Segment HTTP tracking API spec, as the request and response models of the API.

Field names follow the spec (camelCase) so Segment and RudderStack libraries can send
unchanged. Unknown top-level fields are ignored, as Segment does.

They are plain pydantic models, which ninja takes as they are, not ninja ``Schema``s:
a Schema reads its input through a getter object made for ORM instances, field by
field, and validating an event took ~11 us of CPU that way against ~3 us now. Bodies
and responses here are dicts, so there is nothing for that getter to do.
"""

import datetime as dt
from typing import Annotated, Any, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from apps.contacts.identity import CONSENT_TRAIT
from apps.contacts.models import ConsentStatus


def _id_to_str(value: Any) -> Any:
    # Segment libraries send ids as strings, but numbers are common from servers.
    if isinstance(value, bool):
        raise ValueError("must be a string or a number")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


# What the schema says of ids is what _id_to_str takes: a string or a number (kept
# as its decimal text); a blank string is no id. Pydantic would describe the
# string they become, not what a client may send.
_ID_DESCRIPTION = (
    "A string, or a number (stored as its decimal text). A blank string is no id."
)
_ID_STRING = {"type": "string", "maxLength": 255}
Id = Annotated[
    Annotated[str, Field(max_length=255)] | None,
    BeforeValidator(_id_to_str),
    WithJsonSchema(
        {
            "anyOf": [_ID_STRING, {"type": "number"}, {"type": "null"}],
            "description": _ID_DESCRIPTION,
        }
    ),
]
RequiredId = Annotated[
    str,
    BeforeValidator(_id_to_str),
    Field(min_length=1, max_length=255),
    WithJsonSchema(
        {
            "anyOf": [{**_ID_STRING, "pattern": "\\S"}, {"type": "number"}],
            "description": _ID_DESCRIPTION,
        }
    ),
]


def _sender_required(schema: dict[str, Any]) -> None:
    """The schema of _someone_sent_it: userId or anonymousId, not null, not blank."""
    schema["anyOf"] = [
        {
            "required": [name],
            "properties": {
                name: {
                    "anyOf": [{"type": "string", "pattern": "\\S"}, {"type": "number"}]
                }
            },
        }
        for name in ("userId", "anonymousId")
    ]
    schema["description"] = "Either userId or anonymousId is required."


# Client times (timestamp, originalTimestamp, sentAt) are taken within these bounds.
# The clock-skew correction (ingestion.event_timestamp) adds one client time's
# distance from another to the arrival time: within the range that stays a valid
# datetime. PostgreSQL's timestamptz refuses UTC offsets beyond 15:59; Python's go
# to 23:59.
EARLIEST_CLIENT_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST_CLIENT_TIME = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
MAX_UTC_OFFSET = dt.timedelta(hours=15, minutes=59)


def _storable_time(value: dt.datetime) -> dt.datetime:
    offset = value.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        raise ValueError("the UTC offset must be within -15:59 and +15:59")
    aware = value if offset is not None else value.replace(tzinfo=dt.UTC)
    if not EARLIEST_CLIENT_TIME <= aware < LATEST_CLIENT_TIME:
        raise ValueError(
            f"must be from {EARLIEST_CLIENT_TIME:%Y-%m-%d} and before "
            f"{LATEST_CLIENT_TIME:%Y-%m-%d} (UTC)"
        )
    return value


ClientTime = Annotated[
    dt.datetime,
    AfterValidator(_storable_time),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": "^(19[7-9][0-9]|2[01][0-9][0-9])-",
            "description": (
                "ISO 8601, from 1970-01-01 and before 2200-01-01 (UTC), with a UTC "
                "offset within -15:59 and +15:59 (none is UTC)."
            ),
        }
    ),
]


class Message(BaseModel):
    model_config = ConfigDict(json_schema_extra=_sender_required)

    messageId: Annotated[str, Field(max_length=100)] | None = None
    anonymousId: Id = None
    userId: Id = None
    timestamp: ClientTime | None = None
    originalTimestamp: ClientTime | None = None
    sentAt: ClientTime | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _someone_sent_it(self) -> "Message":
        if not self.userId and not self.anonymousId and self.type != "alias":
            raise ValueError("either userId or anonymousId is required")
        return self

    type: str = "track"


class Track(Message):
    type: Literal["track"] = "track"
    event: Annotated[str, Field(min_length=1, max_length=200)]
    properties: dict[str, Any] = Field(default_factory=dict)


class Identify(Message):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(default_factory=dict)

    def effective_traits(self) -> dict[str, Any]:
        """The traits: the top-level ones or, when those are empty, context.traits,
        where RudderStack's SDKs put them (the Segment spec allows either)."""
        if self.traits:
            return self.traits
        traits = self.context.get("traits")
        return traits if isinstance(traits, dict) else {}

    @model_validator(mode="after")
    def _traits_are_sane(self) -> "Identify":
        traits = self.effective_traits()
        where = "traits" if traits is self.traits else "context.traits"
        email = traits.get("email")
        if email not in (None, ""):
            try:
                validate_email(str(email))
            except DjangoValidationError:
                raise ValueError(
                    f"{where}.email: {email!r} is not an email address"
                ) from None
        consent = traits.get(CONSENT_TRAIT)
        if consent is not None and consent not in ConsentStatus.values:
            raise ValueError(
                f"{where}.{CONSENT_TRAIT}: {consent!r} is not one of "
                f"{', '.join(ConsentStatus.values)}"
            )
        return self


class Page(Message):
    type: Literal["page"] = "page"
    name: Annotated[str, Field(max_length=200)] | None = None
    category: Annotated[str, Field(max_length=200)] | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class Screen(Message):
    type: Literal["screen"] = "screen"
    name: Annotated[str, Field(max_length=200)] | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class Group(Message):
    type: Literal["group"] = "group"
    groupId: RequiredId
    traits: dict[str, Any] = Field(default_factory=dict)


class Alias(Message):
    # userId and previousId are required by their own types.
    model_config = ConfigDict(json_schema_extra=None)

    type: Literal["alias"] = "alias"
    previousId: RequiredId
    userId: RequiredId


AnyMessage = Annotated[
    Track | Identify | Page | Screen | Group | Alias, Field(discriminator="type")
]


class Batch(BaseModel):
    batch: Annotated[list[AnyMessage], Field(min_length=1)]
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)
    sentAt: ClientTime | None = None


class Accepted(BaseModel):
    success: bool = True
    accepted: int = Field(
        description="events stored now; not those a source's consent gate dropped "
        "(docs/privacy.md), which are answered alike and not counted here"
    )
    duplicates: int = Field(description="events whose messageId was stored before")


class FieldProblem(BaseModel):
    field: str = Field(description="where, e.g. batch[2].properties.price")
    message: str


class Problem(BaseModel):
    """The body of every refused call (4xx)."""

    error: str = Field(description="what is wrong, in a sentence")
    detail: list[FieldProblem] | None = Field(
        default=None, description="each wrong field (400 only)"
    )
