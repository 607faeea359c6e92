"""Admin search over tables that grow with traffic: by exact values an index finds.

Django's admin search is ``icontains`` on every search field, a LIKE '%term%' that
reads the whole table (and the joined contacts) on every search. Lists of events,
messages, enrollments and decisions search instead by who (a contact's exact email,
user id or anonymous id, found through their unique indexes, then the rows by
contact id) and by the exact values of a few indexed columns.
"""

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower

from apps.core.paging import LargeTablePaginator

from .models import Contact, Identity

CONTACT_HELP = "a contact's exact email, user id or anonymous id"


def contact_ids_named(term: str) -> list[int]:
    """The contacts whose email (any case), user id or anonymous id is exactly
    ``term``: one query through the three unique indexes."""
    term = term.strip()
    if not term:
        return []
    by_email = (
        Contact.objects.filter(email__isnull=False)  # the unique index's predicate
        .annotate(email_lower=Lower("email"))
        .filter(email_lower=term.lower())
        .values_list("pk")
    )
    by_user_id = Contact.objects.filter(external_id=term).values_list("pk")
    by_anonymous_id = Identity.objects.filter(anonymous_id=term).values_list(
        "contact_id"
    )
    return sorted(
        {pk for (pk,) in by_email.union(by_user_id, by_anonymous_id).order_by()}
    )


class LargeTableAdminMixin:
    """A ModelAdmin for a table that grows with traffic: no COUNT(*) of the table
    (LargeTablePaginator), no total under the search box, no facet counts, no
    sorting by columns that no index orders, and search by exact, indexed values.

    ``contact_search`` names the foreign key to Contact that a contact's email or
    ids find rows by; ``exact_search_q`` adds the admin's own indexed columns.
    """

    paginator = LargeTablePaginator
    show_full_result_count = False
    # Facets count every filter choice over the whole list.
    show_facets = admin.ShowFacets.NEVER
    # The list stays in primary-key order, newest first, which an index gives;
    # sorting by another column would sort the whole table first.
    sortable_by = ()
    contact_search = "contact"

    def get_ordering(self, request):
        return ["-pk"]

    def get_search_results(self, request, queryset: QuerySet, search_term: str):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = self.exact_search_q(term)
        ids = contact_ids_named(term) if self.contact_search else []
        if ids:
            match |= Q(**{f"{self.contact_search}_id__in": ids})
        # False: no row can come twice, so no DISTINCT over the list.
        return queryset.filter(match), False

    def exact_search_q(self, term: str) -> Q:
        """Rows whose indexed columns equal ``term``; by default the row's id."""
        # An empty IN matches nothing, and drops out of an OR unseen.
        return Q(pk=int(term)) if term.isdigit() and len(term) < 19 else Q(pk__in=[])
