"""RQ entry points for email: ids in, one service call, nothing else."""

from .delivery import message_send


def send_message(message_id: int) -> str:
    return message_send(message_id=message_id)
