"""RQ entry points for email: ids in, one service call, nothing else."""

from .broadcasts import campaign_start
from .delivery import message_send, messages_send_batch
from .dispatch import campaign_dispatch
from .experiments import campaign_decide


def send_message(message_id: int) -> str:
    return message_send(message_id=message_id)


def send_messages(message_ids: list[int]) -> dict[str, int]:
    return messages_send_batch(message_ids=message_ids)


def start_campaign(campaign_id: int) -> bool:
    return campaign_start(campaign_id=campaign_id)


def dispatch_campaign(campaign_id: int) -> int:
    return campaign_dispatch(campaign_id=campaign_id)


def decide_campaign(campaign_id: int) -> bool:
    return campaign_decide(campaign_id=campaign_id)
