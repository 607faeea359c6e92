"""A batch send no longer reserves the messages it has not reached (it claims a
group of 25 at a time). Messages a batch had reserved when this is deployed would
be marked uncertain by the new tick: they were never handed over, so they go back
to the queue, their claim not counted as an attempt. A batch of the old code still
running finds them no longer reserved and leaves them."""

from django.db import migrations
from django.db.models import F

RESERVED = "reserved by a batch send, not handed over yet"


def requeue_reserved(apps, schema_editor):
    Message = apps.get_model("campaigns", "Message")
    Message.objects.filter(status="sending", error=RESERVED).update(
        status="queued", attempts=F("attempts") - 1, error=""
    )


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0007_indexes_and_limits")]

    operations = [migrations.RunPython(requeue_reserved, migrations.RunPython.noop)]
