"""Topics in admin: the list with subscriber counts, the read-only history of
people's choices, and the contact page's "Topics" panel."""

from django.contrib import admin
from django.db.models import Count, Q, Subquery, Value
from django.template.loader import render_to_string

from apps.contacts.models import Contact

from .models import Topic, TopicSubscription, TopicSubscriptionChange
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

    @admin.display(description="subscribers")
    def subscribers(self, obj: Topic) -> int:
        if obj.default == Topic.Default.OPT_OUT:
            return obj.contacts - obj.said_no
        return obj.said_yes


@admin.register(TopicSubscriptionChange)
class TopicSubscriptionChangeAdmin(admin.ModelAdmin):
    """The history: written by topics.topic_set only, never edited."""

    list_display = ["at", "contact", "topic", "subscribed", "source", "detail"]
    list_filter = ["topic", "source", "subscribed"]
    list_select_related = ["contact", "topic"]
    search_fields = ["contact__email", "detail"]
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def topics_panel(request, contact) -> str:
    """Each topic with the contact's state (chosen or the default), and their last
    changes."""
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
    changes = TopicSubscriptionChange.objects.filter(contact=contact).select_related(
        "topic"
    )[:10]
    return render_to_string(
        "admin/campaigns/topics_panel.html",
        {"rows": rows, "changes": changes},
        request=request,
    )
