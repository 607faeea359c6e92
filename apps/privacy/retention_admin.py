"""Retention runs in admin, under Privacy: read-only, for those with the view
permission (Admin; they name no contact, but they are the operators' record)."""

from django.contrib import admin
from django.utils.html import format_html_join

from .models import RetentionRun


@admin.register(RetentionRun)
class RetentionRunAdmin(admin.ModelAdmin):
    list_display = ["started_at", "finished_at", "status", "deleted_summary"]
    list_filter = ["status"]
    date_hierarchy = "started_at"
    readonly_fields = [
        "started_at",
        "finished_at",
        "status",
        "deleted_table",
        "error",
    ]
    exclude = ["deleted"]

    @admin.display(description="deleted")
    def deleted_summary(self, run: RetentionRun) -> str:
        return ", ".join(f"{kind} {count}" for kind, count in run.deleted.items())

    @admin.display(description="deleted, per kind")
    def deleted_table(self, run: RetentionRun) -> str:
        return (
            format_html_join("", "<div>{}: {}</div>", sorted(run.deleted.items()))
            or "nothing"
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
