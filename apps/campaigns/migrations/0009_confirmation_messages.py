from django.db import migrations, models

class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0008_requeue_reserved_messages"),
    ]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="kind",
            field=models.CharField(
                choices=[
                    ("marketing", "Marketing (to the contact)"),
                    ("notification", "Team notification"),
                    ("transactional", "Transactional (sent without marketing consent)"),
                    ("confirmation", "Opt-in confirmation"),
                ],
                default="marketing",
                max_length=13,
            ),
        ),
    ]
