from django.db import migrations, models
from django.db.models import F


def admitted_when_started(apps, schema_editor):
    """Generations from before the field ran as soon as a worker took them, as far as the
    site could tell: the ones a worker took count as admitted then."""
    Generation = apps.get_model("generation", "Generation")
    Generation.objects.filter(started_at__isnull=False).update(admitted_at=F("started_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("generation", "0016_generation_error_code"),
    ]

    operations = [
        migrations.AddField(
            model_name="generation",
            name="admitted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(admitted_when_started, migrations.RunPython.noop),
    ]
