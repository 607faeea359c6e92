from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "apps.campaigns"
    label = "campaigns"
    verbose_name = "Email"

    def ready(self) -> None:
        from anymail.signals import tracking
        from django.core import checks

        from apps.contacts.panels import Panel, register_panel
        from apps.core import hooks
        from apps.core.health import register_backlog
        from apps.core.scheduler import register_tick_task
        from apps.segments.conditions import register_leaf
        from apps.segments.selectors import register_vocabulary

        from .admin import messages_panel
        from .broadcasts import (
            campaign_recipients_move,
            message_may_go,
            tick_campaigns,
        )
        from .consent_admin import consent_panel
        from .optin import confirmations_for_identifies
        from .recovery import messages_mark_uncertain, messages_reenqueue_due
        from .selectors import queued_backlog
        from .services import messages_move_to_contact
        from .topic_admin import topics_panel
        from .topic_leaf import TopicLeaf, topics_vocabulary
        from .topic_traits import topics_from_identify
        from .topics import topic_subscriptions_move
        from .tracking import on_tracking
        from .webhooks import check_webhook_secret

        tracking.connect(on_tracking, dispatch_uid="nudge-email-tracking")
        checks.register(check_webhook_secret, checks.Tags.security)
        hooks.register(hooks.CONTACTS_MERGED, messages_move_to_contact)
        hooks.register(hooks.CONTACTS_MERGED, topic_subscriptions_move)
        hooks.register(hooks.CONTACTS_MERGED, campaign_recipients_move)
        hooks.register(hooks.EVENTS_INGESTED, topics_from_identify)
        hooks.register(hooks.EVENTS_INGESTED, confirmations_for_identifies)
        register_leaf(TopicLeaf())
        register_vocabulary("topics", topics_vocabulary)
        register_tick_task("email", messages_reenqueue_due)
        register_tick_task("email-uncertain", messages_mark_uncertain)
        register_tick_task("campaigns", tick_campaigns)
        hooks.register(hooks.MESSAGE_MAY_GO, message_may_go)
        register_backlog("email", queued_backlog)
        register_panel(
            Panel(key="messages", title="Email", render=messages_panel, order=30)
        )
        register_panel(
            Panel(key="consent", title="Email consent", render=consent_panel, order=5)
        )
        register_panel(
            Panel(key="topics", title="Topics", render=topics_panel, order=6)
        )
