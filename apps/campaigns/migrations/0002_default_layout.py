from django.db import migrations

DEFAULT_LAYOUT = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { margin: 0; background: #f4f5f7; font-family: Helvetica, Arial, sans-serif; color: #1f2933; }
  .wrap { max-width: 600px; margin: 0 auto; background: #ffffff; }
  .header { padding: 20px 28px; border-bottom: 1px solid #e4e7eb; font-weight: bold; font-size: 18px; }
  .content { padding: 28px; font-size: 16px; line-height: 1.5; }
  .footer { padding: 20px 28px; font-size: 12px; color: #7b8794; line-height: 1.5; }
  .footer a { color: #7b8794; }
  .button { display: inline-block; background: #2f6fde; color: #ffffff; padding: 12px 20px;
            border-radius: 6px; text-decoration: none; }
</style>
</head>
<body>
<div class="wrap">
  <div class="header">{{ company.name }}</div>
  <div class="content">{{ content }}</div>
  <div class="footer">
    {{ company.name }} &middot; {{ company.address }}<br>
    You get this email because you shopped with us or signed up.
    <a href="{{ unsubscribe_url }}">Unsubscribe</a> &middot;
    <a href="{{ preferences_url }}">Preferences</a> &middot;
    <a href="{{ view_in_browser_url }}">View in browser</a>
  </div>
</div>
</body>
</html>
"""


def create_default_layout(apps, schema_editor):
    EmailLayout = apps.get_model("campaigns", "EmailLayout")
    if not EmailLayout.objects.filter(is_default=True).exists():
        EmailLayout.objects.create(name="Default", html=DEFAULT_LAYOUT, is_default=True)


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0001_initial")]

    operations = [migrations.RunPython(create_default_layout, migrations.RunPython.noop)]
