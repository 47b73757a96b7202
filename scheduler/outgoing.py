"""Building the message to send from a step, a contact and a claimed outbox row.

A step's text and template parameters are personalized for the contact here, and every
message carries the outbox id as its callback data so that Meta's status webhooks can be
matched back to the row. One-off messages (an opt-out confirmation, an admin's answer) are
queued as JSON and rebuilt as they were queued.
"""

from __future__ import annotations

from typing import Any

from scheduler.personalize import ContactFields, render
from scheduler.ports import OutgoingMessage, callback_data
from scheduler.steps import StepSpec, TemplateRef


def contact_fields(contact: Any) -> ContactFields:
    return ContactFields(
        name=contact.name,
        first_name=contact.first_name,
        phone=contact.phone,
        company=contact.company,
        email=contact.email,
        custom=contact.custom_fields or {},
    )


def template(to: str, ref: TemplateRef, fields: ContactFields, message_id: int) -> OutgoingMessage:
    return OutgoingMessage(
        to=to,
        kind="template",
        template_name=ref.name,
        template_language=ref.language,
        template_params=tuple(render(p, fields) for p in ref.params),
        template_header=ref.header,
        callback_data=callback_data(message_id),
    )


def free_form(to: str, spec: StepSpec, fields: ContactFields, message_id: int) -> OutgoingMessage:
    text = render(spec.body, fields)
    if spec.kind == "media":
        return OutgoingMessage(
            to=to,
            kind="media",
            text=text,
            media_type=spec.media_type,
            media_url=spec.media_url,
            callback_data=callback_data(message_id),
        )
    return OutgoingMessage(to=to, kind="text", text=text, callback_data=callback_data(message_id))


def message_from_json(to: str, data: dict[str, Any], message_id: int) -> OutgoingMessage:
    header = data.get("header")
    return OutgoingMessage(
        to=to,
        kind=data.get("kind", "text"),
        text=str(data.get("text", "")),
        media_type=data.get("media_type"),
        media_url=data.get("media_url"),
        template_name=data.get("template"),
        template_language=data.get("language"),
        template_params=tuple(data.get("params") or ()),
        template_header=(header[0], header[1]) if header else None,
        callback_data=callback_data(message_id),
    )
