from django.db import models


class SigningSecret(models.Model):
    """A secret Nudge generated for itself and shares with others, such as the key
    that signs webhook steps' requests (apps/core/secrets.py). Not SECRET_KEY, nor
    derived from it: whoever holds one can check (and forge) only what it signs."""

    name = models.CharField(max_length=50, unique=True)
    value = models.CharField(max_length=200)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name = "signing secret"

    def __str__(self) -> str:
        return self.name
