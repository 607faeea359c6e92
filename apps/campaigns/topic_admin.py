"""Topics in admin: the list with subscriber counts, and the contact page's "Topics"
panel. People's choices are in the consent history (contacts.ConsentRecord)."""

from django.contrib import admin
from django.db.models import Count, Q, Subquery, Value
from django.template.loader import render_to_string

from apps.contacts.models import ConsentRecord, Contact

from .models import Topic, TopicSubscription
from .topics import topic_states


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "default", "listed", "subscribers", "created_at"]
    list_filter = ["default", "listed"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # Fixed once made: workflows name a topic by its slug, and switching the
        # default to opt-out would count everyone who never chose as subscribed.
        return ["slug", "default"]

    def get_prepopulated_fields(self, request, obj=None):
        return self.prepopulated_fields if obj is None else {}

    def get_queryset(self, request):
        # One query for the page: an opt-in topic's subscribers are its "yes"
        # rows; an opt-out topic's, every contact but its "no" rows (the contact
        # total is a scalar subquery, computed once).
        contacts = Subquery(
            # (contacts with an address: the anonymous cannot be emailed)
            Contact.objects.exclude(email=None)
            .order_by()
            .annotate(all=Value(1))
            .values("all")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                said_yes=Count(
                    "subscriptions", filter=Q(subscriptions__subscribed=True)
                ),
                said_no=Count(
                    "subscriptions", filter=Q(subscriptions__subscribed=False)
                ),
                contacts=contacts,
            )
        )

    def get_deleted_objects(self, objs, request):
        # A topic with consent history is kept, as the history's proof names it by
        # its slug: a later topic of the same slug would take over its records.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(
            objs, request
        )
        for topic in objs:
            changes = ConsentRecord.objects.filter(topic=topic.slug).count()
            if changes:
                protected.append(f"{topic}: {changes} consent records name it")
        return deleted, counts, perms_needed, protected

    @admin.display(description="subscribers")
    def subscribers(self, obj: Topic) -> int:
        if obj.default == Topic.Default.OPT_OUT:
            return obj.contacts - obj.said_no
        return obj.said_yes


def topics_panel(request, contact) -> str:
    """Each topic with the contact's state (chosen or the default); their changes
    are in the contact's consent history."""
    topics = list(Topic.objects.all())
    states = topic_states(contact, topics)
    chosen = set(
        TopicSubscription.objects.filter(contact=contact).values_list(
            "topic_id", flat=True
        )
    )
    rows = [
        {"topic": t, "subscribed": states[t.pk], "by_default": t.pk not in chosen}
        for t in topics
    ]
    return render_to_string(
        "admin/campaigns/topics_panel.html",
        {"rows": rows},
        request=request,
    )
