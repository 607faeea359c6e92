"""Changing the contact: attributes, static lists, score."""

from django.db.models import F

from apps.contacts.models import Contact
from apps.contacts.services import contact_set_attributes
from apps.events.services import event_record
from apps.segments.models import Segment
from apps.segments.services import segment_add_contacts, segment_remove_contacts

from .base import Outcome, StepContext, StepType, register_step


class UpdateContact(StepType):
    name = "update_contact"
    label = "Update contact"

    def validate(self, config, where):
        errors = []
        if not isinstance(config.get("set", {}), dict):
            errors.append(f"{where}.set: attribute -> value")
        unset = config.get("unset", [])
        if not isinstance(unset, list) or not all(isinstance(k, str) for k in unset):
            errors.append(f"{where}.unset: a list of attribute names")
        for key in ("add_to_list", "remove_from_list"):
            if config.get(key) is not None:
                segment = Segment.objects.filter(pk=config[key]).first()
                if segment is None or segment.is_dynamic:
                    errors.append(f"{where}.{key}: not a static list")
        score = config.get("add_score", 0)
        if not isinstance(score, int) or isinstance(score, bool):
            errors.append(f"{where}.add_score: a whole number")
        if not any(
            config.get(k)
            for k in ("set", "unset", "add_to_list", "remove_from_list", "add_score")
        ):
            errors.append(f"{where}: nothing to change")
        return errors

    def run(self, ctx: StepContext) -> Outcome:
        config, contact = ctx.step.config, ctx.contact
        done = []
        if config.get("set") or config.get("unset"):
            contact_set_attributes(
                contact=contact,
                values=config.get("set") or {},
                remove=config.get("unset") or [],
            )
            done.append("attributes")
        if config.get("add_to_list"):
            segment_add_contacts(
                segment=Segment.objects.get(pk=config["add_to_list"]),
                contact_ids=[contact.pk],
            )
            done.append("added to list")
        if config.get("remove_from_list"):
            segment_remove_contacts(
                segment=Segment.objects.get(pk=config["remove_from_list"]),
                contact_ids=[contact.pk],
            )
            done.append("removed from list")
        if config.get("add_score"):
            points = config["add_score"]
            Contact.objects.filter(pk=contact.pk).update(score=F("score") + points)
            new = Contact.objects.values_list("score", flat=True).get(pk=contact.pk)
            contact.score = new
            event_record(
                contact_id=contact.pk,
                name="score_changed",
                properties={
                    "old": new - points,
                    "new": new,
                    "delta": points,
                    "rule": f"workflow {ctx.enrollment.workflow.name}",
                },
                dedupe_key=f"wfscore:{ctx.enrollment.pk}:{ctx.step.pk}",
            )
            done.append(f"score {points:+d}")
        return Outcome("updated", reason=", ".join(done), detail={"config": config})

    def describe(self, config):
        parts = []
        if config.get("set"):
            parts.append(
                "set " + ", ".join(f"{k}={v}" for k, v in config["set"].items())
            )
        if config.get("unset"):
            parts.append("unset " + ", ".join(config["unset"]))
        if config.get("add_to_list"):
            parts.append("add to a list")
        if config.get("remove_from_list"):
            parts.append("remove from a list")
        if config.get("add_score"):
            parts.append(f"score {config['add_score']:+d}")
        return "Update contact: " + "; ".join(parts)


register_step(UpdateContact())
