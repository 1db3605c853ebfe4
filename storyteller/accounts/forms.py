from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError

# Account names the site keeps for its own tools: `manage.py loadtest` makes (and deletes)
# writers named loadtest-N.
RESERVED_PREFIXES = ("loadtest-",)


class SignupForm(UserCreationForm):
    def clean_username(self):
        username = super().clean_username()
        for prefix in RESERVED_PREFIXES:
            if username.lower().startswith(prefix):
                raise ValidationError(
                    f"Names that start with {prefix} are kept for the site's own tools; choose another."
                )
        return username
